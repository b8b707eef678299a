package tokenclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/realtimeauth/realtimeauth/internal/redirect"
)

// maxAnswer caps the answer read: a token answer is a few hundred bytes.
const maxAnswer = 64 << 10

// request makes one POST to /token (sessionID "") or /refresh-token.
func (c *Client) request(sessionID string, attempt int) (TokenData, *Error) {
	endpoint, body := "/token", []byte("{}")
	if sessionID != "" {
		endpoint = "/refresh-token"
		body, _ = json.Marshal(struct {
			SessionID string `json:"sessionId"`
		}{sessionID})
	}
	fail := func(status int, err error) *Error {
		return &Error{Endpoint: endpoint, Status: status, Attempt: attempt, Err: err}
	}
	req, err := http.NewRequestWithContext(c.ctx, http.MethodPost, c.base+endpoint, bytes.NewReader(body))
	if err != nil {
		return TokenData{}, fail(0, err)
	}
	req.Header = c.cfg.header.Clone()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	sent := c.cfg.clock.Now()
	resp, err := c.cfg.httpClient.Do(req)
	if err != nil {
		return TokenData{}, fail(0, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err == nil && len(b) > maxAnswer {
		err = errors.New("answer too large")
	}
	if err != nil {
		return TokenData{}, fail(resp.StatusCode, fmt.Errorf("reading the answer: %w", err))
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return TokenData{}, fail(resp.StatusCode, fmt.Errorf("%w to %s", ErrRedirect, redirectTarget(resp)))
	}
	if resp.Request != nil && resp.Request.URL != nil && redirect.Origin(resp.Request.URL) != c.origin {
		// A transport of the user's that answered from elsewhere.
		return TokenData{}, fail(resp.StatusCode, errors.New("answer from another origin refused"))
	}
	if resp.StatusCode != http.StatusOK {
		return TokenData{}, answerError(resp, b, fail(resp.StatusCode, nil))
	}
	tok, err := parseToken(b, sent)
	if err != nil {
		return TokenData{}, fail(resp.StatusCode, err)
	}
	return tok, nil
}

// parseToken reads a success answer; sent is the local time the request
// left, from which the local expiry counts.
func parseToken(b []byte, sent time.Time) (TokenData, error) {
	var v struct {
		Success    bool    `json:"success"`
		Token      string  `json:"token"`
		ExpiresAt  int64   `json:"expiresAt"`
		ExpiresIn  float64 `json:"expiresIn"`
		ServerTime int64   `json:"serverTime"`
		SessionID  string  `json:"sessionId"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return TokenData{}, fmt.Errorf("malformed answer: %w", err)
	}
	if !v.Success || v.Token == "" || v.SessionID == "" {
		return TokenData{}, errors.New("malformed answer: no success, token or sessionId")
	}
	if v.ExpiresIn <= 0 || v.ExpiresIn > 366*24*3600 {
		return TokenData{}, fmt.Errorf("answer with an unusable expiresIn %v", v.ExpiresIn)
	}
	life := time.Duration(v.ExpiresIn * float64(time.Second))
	return TokenData{
		Token:           v.Token,
		SessionID:       v.SessionID,
		ExpiresAt:       sent.Add(life),
		ExpiresIn:       life,
		ServerTime:      time.UnixMilli(v.ServerTime),
		ServerExpiresAt: time.UnixMilli(v.ExpiresAt),
	}, nil
}

// answerError fills e from an error answer: the server's code, message and
// retry delay. A body that is not realtimeauth's JSON (a proxy's page)
// leaves them empty.
func answerError(resp *http.Response, b []byte, e *Error) *Error {
	var v struct {
		Error      string  `json:"error"`
		Code       string  `json:"code"`
		RetryAfter float64 `json:"retryAfter"`
	}
	if json.Unmarshal(b, &v) == nil {
		e.Code, e.Message = v.Code, v.Error
	}
	e.RetryAfter = retryAfter(resp.Header)
	if e.RetryAfter == 0 && v.RetryAfter > 0 && v.RetryAfter < 24*3600 {
		e.RetryAfter = time.Duration(v.RetryAfter * float64(time.Second))
	}
	return e
}

// retryAfter reads Retry-After: seconds, or an HTTP date measured against
// the answer's Date header (both on the server's clock), never against the
// local clock. Unusable values count as absent.
func retryAfter(h http.Header) time.Duration {
	s := strings.TrimSpace(h.Get("Retry-After"))
	if s == "" {
		return 0
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > 24*3600 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	at, err := http.ParseTime(s)
	if err != nil {
		return 0
	}
	date, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		return 0
	}
	if d := at.Sub(date); d > 0 && d <= 24*time.Hour {
		return d
	}
	return 0
}

// redirectTarget names where a refused redirect pointed: the scheme and
// host of its Location only, never its path or query.
func redirectTarget(resp *http.Response) string {
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.Header.Get("Location") == "" {
		return "an unusable Location"
	}
	if resp.Request != nil && resp.Request.URL != nil {
		u = resp.Request.URL.ResolveReference(u)
	}
	return u.Scheme + "://" + u.Host
}
