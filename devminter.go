package realtimeauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"
)

// DevMinter issues fake tokens locally, for development without an OpenAI
// key: "ek_dev_" and 32 random hex digits, useless against OpenAI, in mode
// "demo". The zero value is ready to use.
type DevMinter struct {
	// Now is the clock for ExpiresAt; nil means time.Now.
	Now func() time.Time
}

var _ Minter = (*DevMinter)(nil)

// DevTokenPrefix starts every DevMinter token.
const DevTokenPrefix = "ek_dev_"

// Mint implements Minter.
func (d *DevMinter) Mint(ctx context.Context, req MintRequest) (Token, error) {
	if err := ctx.Err(); err != nil {
		return Token{}, err
	}
	now := time.Now
	if d != nil && d.Now != nil {
		now = d.Now
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return Token{Value: DevTokenPrefix + hex.EncodeToString(b[:]), ExpiresAt: now().Add(req.TTL), Mode: modeDemo}, nil
}

// Local reports true: a DevMinter mints in-process, so the handler sets
// no deadline on it (see Minter).
func (d *DevMinter) Local() bool { return true }
