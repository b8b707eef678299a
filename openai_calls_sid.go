package realtimeauth

// Until the upstream branch (OpenAI-Safety-Identifier on client_secrets,
// keyed per minter) lands, the calls request gets its identifier from
// here, under names of its own so that the two never clash; when it has
// landed, Call uses its safetyIdentifier and this file goes.

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
)

const callSafetyIdentifierHeader = "OpenAI-Safety-Identifier"

var callSIDKey = func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}()

// callSafetyIdentifier is a keyed hash of the subject, or of the session when
// the user is anonymous; "" when both are empty.
func (m *OpenAIMinter) callSafetyIdentifier(subject, sessionID string) string {
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
