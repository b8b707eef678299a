package realtimeauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"
)

// devMinter is what NewDevMinter returns.
type devMinter struct {
	now func() time.Time
}

// NewDevMinter returns a Minter that issues fake tokens locally, for
// development without an OpenAI key: "ek_dev_" and 32 random hex digits,
// useless against OpenAI, in mode "demo". now is the clock for their
// ExpiresAt; nil means time.Now. It mints in-process: its Local reports
// true, so the handler sets no deadline on it (see Minter). It places no
// calls: with it the relay answers 501 relay_unavailable.
func NewDevMinter(now func() time.Time) Minter {
	if now == nil {
		now = time.Now
	}
	return &devMinter{now: now}
}

// devTokenPrefix starts every devMinter token.
const devTokenPrefix = "ek_dev_"

// Mint implements Minter.
func (d *devMinter) Mint(ctx context.Context, req MintRequest) (Token, error) {
	if err := ctx.Err(); err != nil {
		return Token{}, err
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return Token{Value: devTokenPrefix + hex.EncodeToString(b[:]), ExpiresAt: d.now().Add(req.TTL), Mode: modeDemo}, nil
}

// Local reports true: a devMinter mints in-process.
func (d *devMinter) Local() bool { return true }
