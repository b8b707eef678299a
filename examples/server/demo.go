package main

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/realtimeauth/realtimeauth"
)

// The demo page at / : Connect, status, the token's countdown, the client's
// events and, with a real key, a WebRTC voice session with OpenAI.
//
//go:embed demo
var demoFiles embed.FS

// demoPage is the page and its Content-Security-Policy, built once. The
// import map pins the client module to its Subresource Integrity hash, and
// the policy admits that one inline script by its hash.
var demoPage, demoCSP = buildDemoPage()

func buildDemoPage() ([]byte, string) {
	page, err := demoFiles.ReadFile("demo/index.html")
	if err != nil {
		panic(err)
	}
	importMap, _ := json.Marshal(map[string]any{
		"imports":   map[string]string{},
		"integrity": map[string]string{"/api/voice-agent/client.js": realtimeauth.ClientScriptIntegrity()},
	})
	sum := sha256.Sum256(importMap)
	csp := strings.Join([]string{
		"default-src 'none'",
		"script-src 'self' 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'",
		"style-src 'self'",
		"connect-src 'self' https://api.openai.com",
		"media-src 'self' blob: mediastream:",
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}, "; ")
	return []byte(strings.Replace(string(page), "{{IMPORTMAP}}", string(importMap), 1)), csp
}

// registerDemo serves the demo page, its scripts and stylesheet, and
// /demo/origin, which tells the page whether its origin is allowed.
func registerDemo(mux *http.ServeMux, logger *slog.Logger, h http.Handler, allowed []string) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		pageHeaders(w, "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", demoCSP)
		w.Header().Set("Permissions-Policy", "microphone=(self)")
		if r.Method == http.MethodGet {
			_, _ = w.Write(demoPage)
		}
	})
	serveAsset(mux, "/demo.js", "demo/demo.js", "text/javascript; charset=utf-8")
	serveAsset(mux, "/demo-boot.js", "demo/boot.js", "text/javascript; charset=utf-8")
	mux.Handle("POST /demo/origin", &originCheck{h: h, allowed: allowed, log: logger, logged: map[string]bool{}})
	serveAsset(mux, "/demo.css", "demo/demo.css", "text/css; charset=utf-8")
}

func serveAsset(mux *http.ServeMux, path, name, contentType string) {
	body, err := demoFiles.ReadFile(name)
	if err != nil {
		panic(err)
	}
	mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
		pageHeaders(w, contentType)
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	})
}

func pageHeaders(w http.ResponseWriter, contentType string) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}

// originCheck answers the demo page's question when its client module did
// not load: is this page's origin (the Origin header a browser puts on a
// POST) one the handler allows? The handler refuses the module to any
// other origin, and the page would otherwise wait at "loading the client…"
// forever. It logs each refused origin once (the first 32), so that the
// server's log says it too.
type originCheck struct {
	h       http.Handler // the realtimeauth handler, which decides
	allowed []string
	log     *slog.Logger
	mu      sync.Mutex
	logged  map[string]bool
}

func (c *originCheck) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	ok := handlerAllows(c.h, origin)
	if !ok && origin != "" {
		c.mu.Lock()
		first := !c.logged[origin] && len(c.logged) < 32
		if first {
			c.logged[origin] = true
		}
		c.mu.Unlock()
		if first {
			c.log.Warn("the demo page was opened from an origin that is not allowed, so its client module was refused: "+
				"open one of the allowed origins, or add this one to ALLOWED_ORIGINS",
				"origin", origin, "allowed_origins", c.allowed)
		}
	}
	pageHeaders(w, "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(struct {
		Origin  string   `json:"origin"`
		Allowed bool     `json:"allowed"`
		Origins []string `json:"allowedOrigins"`
	}{origin, ok, c.allowed})
}

// handlerAllows asks h itself whether it allows origin, with the CORS
// preflight a page's GET of {base}/compatibility would send: the handler
// answers it 204 for an allowed origin and 403 otherwise, and records
// neither as an event or a strike.
func handlerAllows(h http.Handler, origin string) bool {
	if origin == "" || h == nil {
		return false
	}
	r, err := http.NewRequest(http.MethodOptions, "/api/voice-agent/compatibility", nil)
	if err != nil {
		return false
	}
	r.RemoteAddr = "127.0.0.1:0"
	r.Header.Set("Origin", origin)
	r.Header.Set("Access-Control-Request-Method", http.MethodGet)
	var w statusRecorder
	h.ServeHTTP(&w, r)
	return w.status == http.StatusNoContent
}

// statusRecorder keeps the status of an answer and drops the rest.
type statusRecorder struct {
	hdr    http.Header
	status int
}

func (w *statusRecorder) Header() http.Header {
	if w.hdr == nil {
		w.hdr = http.Header{}
	}
	return w.hdr
}

func (w *statusRecorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(b), nil
}
