package bench

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// The HTTP contract as the load generator checks it: what each kind of
// request is, the statuses it may get, and what a well-formed answer holds.

// requestKind names what a generated request is, for the report.
type requestKind string

const (
	kindToken        requestKind = "token"
	kindRefresh      requestKind = "refresh"
	kindHealth       requestKind = "health"
	kindFlood        requestKind = "token (flood)"
	kindBadJSON      requestKind = "bad: malformed JSON"
	kindBadMethod    requestKind = "bad: GET /token"
	kindBadSession   requestKind = "bad: malformed sessionId"
	kindUnknownSess  requestKind = "bad: unknown session"
	kindBadPath      requestKind = "bad: unknown path"
	kindBadMedia     requestKind = "bad: text/plain body"
	kindBadOrigin    requestKind = "bad: foreign origin"
	kindCompareToken requestKind = "token (compare)"
	kindCompareBare  requestKind = "bare (compare)"
)

// expected lists the statuses each kind may get: 403 blocked is always
// possible for a client that earned strikes (flood and bad requests).
var expected = map[requestKind][]int{
	kindToken:        {200},
	kindRefresh:      {200},
	kindHealth:       {200},
	kindFlood:        {200, 429, 403},
	kindBadJSON:      {400, 403},
	kindBadMethod:    {405},
	kindBadSession:   {400, 403},
	kindUnknownSess:  {404, 403},
	kindBadPath:      {404},
	kindBadMedia:     {415, 403},
	kindBadOrigin:    {403},
	kindCompareToken: {200},
	kindCompareBare:  {200},
}

// codeStatus is the contract's status for each error code seen here.
var codeStatus = map[string]int{
	"invalid_request":        400,
	"origin_not_allowed":     403,
	"blocked":                403,
	"session_not_found":      404,
	"not_found":              404,
	"method_not_allowed":     405,
	"unsupported_media_type": 415,
	"rate_limited":           429,
	"refresh_too_soon":       429,
}

// checkContract reports what is wrong with r as an answer to a request of
// kind k, or "" when it is a well-formed answer of the HTTP contract.
func checkContract(k requestKind, r response) string {
	if r.contentType != "application/json" {
		return "Content-Type " + strconv.Quote(r.contentType)
	}
	if r.cacheControl != "no-store" || !r.nosniff {
		return "missing security headers"
	}
	if k == kindCompareBare || k == kindCompareToken {
		// The comparison checks both sides alike and cheaply, so that the
		// generator stays light: a token answer's opening and closing.
		if r.status != 200 || !strings.HasPrefix(string(r.body), `{"success":true,"token":"ek_`) ||
			r.body[len(r.body)-1] != '}' {
			return "bad token answer"
		}
		return ""
	}
	var v map[string]any
	if err := json.Unmarshal(r.body, &v); err != nil {
		return "body is not a JSON object: " + err.Error()
	}
	if k == kindHealth {
		st, _ := v["status"].(string)
		_, svc := v["services"].(map[string]any)
		_, met := v["metrics"].(map[string]any)
		if r.status != 200 || (st != "healthy" && st != "degraded" && st != "unhealthy") || !svc || !met {
			return "bad health answer"
		}
		return ""
	}
	if r.status == 200 {
		tok, _ := v["token"].(string)
		sid, _ := v["sessionId"].(string)
		_, e1 := v["expiresAt"].(float64)
		_, e2 := v["expiresIn"].(float64)
		_, e3 := v["serverTime"].(float64)
		if v["success"] != true || !strings.HasPrefix(tok, "ek_") || len(sid) != 36 || !e1 || !e2 || !e3 {
			return "bad token answer"
		}
		return ""
	}
	msg, _ := v["error"].(string)
	code, _ := v["code"].(string)
	if v["success"] != false || msg == "" || code == "" {
		return "bad error answer"
	}
	if want, ok := codeStatus[code]; ok && want != r.status {
		return fmt.Sprintf("code %s with status %d", code, r.status)
	}
	ra, hasRA := v["retryAfter"].(float64)
	if (r.retryAfter != "") != hasRA || (hasRA && strconv.Itoa(int(ra)) != r.retryAfter) {
		return "Retry-After header and retryAfter disagree"
	}
	if r.status == 429 && r.retryAfter == "" {
		return "429 without Retry-After"
	}
	return ""
}
