package realtimeauth

// Until the upstream branch (OpenAI-Safety-Identifier on client_secrets)
// lands, the calls request gets its identifier from here; this file goes
// when that branch's safetyIdentifier (keyed per minter) is on main.

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
)

const safetyIdentifierHeader = "OpenAI-Safety-Identifier"

var callSIDKey = func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}()

// safetyIdentifier is a keyed hash of the subject, or of the session when
// the user is anonymous; "" when both are empty.
func (m *OpenAIMinter) safetyIdentifier(subject, sessionID string) string {
	var in string
	switch {
	case subject != "":
		in = "subject:" + subject
	case sessionID != "":
		in = "session:" + sessionID
	default:
		return ""
	}
	mac := hmac.New(sha256.New, callSIDKey)
	mac.Write([]byte(in))
	return hex.EncodeToString(mac.Sum(nil)[:16])
}
