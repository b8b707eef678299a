package realtimeauth

import (
	"crypto/sha256"
	"crypto/sha512"
	_ "embed" // the browser client
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
)

// The browser client, served at GET {base}/client.js with its types at
// {base}/client.d.ts. See the README's Browser client section.
var (
	//go:embed js/realtimeauth.js
	clientJS []byte
	//go:embed js/realtimeauth.d.ts
	clientDTS []byte
)

// ClientScriptIntegrity returns the Subresource Integrity hash of the
// browser client served at {base}/client.js ("sha384-…"), for an
// integrity attribute or an import map's "integrity" entry. It changes
// whenever the script does, that is with the library's version.
func ClientScriptIntegrity() string { return clientScript.integrity }

// staticFile is an embedded file with its headers computed once.
type staticFile struct {
	body        []byte
	contentType []string
	etag        []string // strong: the content's SHA-256
	integrity   string
}

func newStaticFile(body []byte, contentType string) staticFile {
	sum := sha256.Sum256(body)
	sri := sha512.Sum384(body)
	return staticFile{
		body:        body,
		contentType: []string{contentType},
		etag:        []string{`"` + hex.EncodeToString(sum[:16]) + `"`},
		integrity:   "sha384-" + base64.StdEncoding.EncodeToString(sri[:]),
	}
}

var (
	clientScript = newStaticFile(clientJS, "text/javascript; charset=utf-8")
	clientTypes  = newStaticFile(clientDTS, "application/typescript; charset=utf-8")
)

// serveStatic serves f: GET and HEAD only, ETag and 304, CORS for allowed
// origins (written by rs/cors). A refused Origin gets 403
// origin_not_allowed rather than the file without CORS headers: the browser
// would refuse that file anyway, and the 403's code in the network panel
// says why. Like every refused origin it is an event, not a strike.
func (h *Handler) serveStatic(k *request, f *staticFile) {
	hd := k.w.Header()
	if k.r.Method != http.MethodGet && k.r.Method != http.MethodHead {
		hd["Allow"] = hdrAllowGET
		writeError(k.w, k.client.tls, errorTable[refMethod], 0)
		return
	}
	k.start = h.now()
	k.now = k.start
	if !h.checkBlocked(k) {
		return
	}
	h.readCORS.HandlerFunc(k.w, k.r)
	if o := k.r.Header.Get("Origin"); o != "" && !h.origins.allowed(o) {
		h.refuse(k, refOrigin, 0)
		return
	}
	hd["Cache-Control"] = hdrNoCache
	hd["X-Content-Type-Options"] = hdrNosniff
	hd["Etag"] = f.etag
	if k.client.tls {
		hd["Strict-Transport-Security"] = hdrHSTS
	}
	if etagMatches(k.r.Header.Get("If-None-Match"), f.etag[0]) {
		k.w.WriteHeader(http.StatusNotModified)
		return
	}
	hd["Content-Type"] = f.contentType
	hd["Content-Length"] = []string{strconv.Itoa(len(f.body))}
	k.w.WriteHeader(http.StatusOK)
	if k.r.Method == http.MethodGet {
		_, _ = k.w.Write(f.body)
	}
}

// etagMatches applies If-None-Match's weak comparison (RFC 9110 13.1.2).
func etagMatches(header, etag string) bool {
	for header != "" {
		var tag string
		tag, header, _ = strings.Cut(header, ",")
		tag = strings.TrimSpace(tag)
		if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
			return true
		}
	}
	return false
}
