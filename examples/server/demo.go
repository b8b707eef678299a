package main

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

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

// registerDemo serves the demo page and its script and stylesheet.
func registerDemo(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		pageHeaders(w, "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", demoCSP)
		w.Header().Set("Permissions-Policy", "microphone=(self)")
		if r.Method == http.MethodGet {
			_, _ = w.Write(demoPage)
		}
	})
	serveAsset(mux, "/demo.js", "demo/demo.js", "text/javascript; charset=utf-8")
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
