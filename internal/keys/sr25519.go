package keys

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"

	schnorrkel "github.com/ChainSafe/go-schnorrkel"
	"github.com/gtank/merlin"
	"github.com/vedhavyas/go-subkey/v2"
	subsr "github.com/vedhavyas/go-subkey/v2/sr25519"
)

// signingCtx is the schnorrkel signing context of Substrate (sp_core) and
// Bittensor.
var signingCtx = []byte("substrate")

func signingContext(msg []byte) *merlin.Transcript {
	return schnorrkel.NewSigningContext(signingCtx, msg)
}

// pair holds the secret key in schnorrkel's canonical 64-byte encoding so it
// can be written to keyfiles, which go-schnorrkel's types do not expose. It
// implements subkey.KeyPair so go-subkey's secret-URI parser can drive it.
type pair struct {
	secret [SecretKeyLen]byte
	pub    [PublicKeyLen]byte
	// seed is the 32-byte mini secret, nil when unknown.
	seed []byte
}

var _ subkey.KeyPair = pair{}

func (p pair) schnorrkel() *schnorrkel.SecretKey {
	return schnorrkel.NewSecretKey([32]byte(p.secret[:32]), [32]byte(p.secret[32:]))
}

func (p pair) Sign(msg []byte) ([]byte, error) {
	sig, err := p.schnorrkel().Sign(signingContext(msg))
	if err != nil {
		return nil, err
	}
	b := sig.Encode()
	return b[:], nil
}

func (p pair) Verify(msg, sig []byte) bool {
	ok, err := VerifyPublic(p.pub[:], msg, sig)
	return err == nil && ok
}

func (p pair) Public() []byte                    { return bytes.Clone(p.pub[:]) }
func (p pair) AccountID() []byte                 { return p.Public() }
func (p pair) SS58Address(network uint16) string { return subkey.SS58Encode(p.pub[:], network) }
func (p pair) Seed() []byte                      { return bytes.Clone(p.seed) }

// pairFromSeed expands a 32-byte mini secret the way schnorrkel's
// ExpansionMode::Ed25519 does (and sp_core uses): SHA-512 of the seed, the
// first half clamped like an ed25519 scalar and divided by the cofactor 8,
// the second half the nonce.
func pairFromSeed(seed []byte) (pair, error) {
	if len(seed) != SeedLen {
		return pair{}, fmt.Errorf("seed must be %d bytes, got %d", SeedLen, len(seed))
	}
	h := sha512.Sum512(seed)
	var s [SecretKeyLen]byte
	copy(s[:], h[:])
	s[0] &= 248
	s[31] &= 63
	s[31] |= 64
	divideByCofactor((*[32]byte)(s[:32]))
	p, err := pairFromSecret(s)
	if err != nil {
		return pair{}, err
	}
	p.seed = bytes.Clone(seed)
	return p, nil
}

// pairFromSecret checks a canonical 64-byte secret key and computes its
// public key.
func pairFromSecret(s [SecretKeyLen]byte) (pair, error) {
	if [32]byte(s[:32]) == [32]byte{} {
		return pair{}, errors.New("secret key: zero scalar")
	}
	pub, err := schnorrkel.NewSecretKey([32]byte(s[:32]), [32]byte(s[32:])).Public()
	if err != nil {
		return pair{}, fmt.Errorf("secret key: scalar is not canonical: %w", err)
	}
	return pair{secret: s, pub: pub.Encode()}, nil
}

func pairFromPhrase(phrase, password string) (pair, error) {
	ms, err := schnorrkel.MiniSecretKeyFromMnemonic(phrase, password)
	if err != nil {
		return pair{}, err
	}
	seed := ms.Encode()
	return pairFromSeed(seed[:])
}

// divideByCofactor divides a little-endian 256-bit integer by 8 in place.
func divideByCofactor(s *[32]byte) {
	var low byte
	for i := 31; i >= 0; i-- {
		r := s[i] & 0x07
		s[i] = s[i]>>3 | low
		low = r << 5
	}
}

// scheme is the sr25519 scheme of sp_core for go-subkey's URI parser.
type scheme struct{}

var _ subkey.Scheme = scheme{}

func (scheme) String() string { return "sr25519" }

func (scheme) Generate() (subkey.KeyPair, error) {
	var seed [SeedLen]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	return pairFromSeed(seed[:])
}

// FromSeed accepts a 32-byte mini secret or a 64-byte canonical secret key,
// like sp_core's from_seed_slice.
func (scheme) FromSeed(b []byte) (subkey.KeyPair, error) {
	switch len(b) {
	case SeedLen:
		return pairFromSeed(b)
	case SecretKeyLen:
		return pairFromSecret([SecretKeyLen]byte(b))
	}
	return nil, fmt.Errorf("hex secret must be %d or %d bytes, got %d", SeedLen, SecretKeyLen, len(b))
}

func (scheme) FromPhrase(phrase, password string) (subkey.KeyPair, error) {
	return pairFromPhrase(phrase, password)
}

// Derive applies junctions as sp_core does: a hard junction derives a new
// mini secret (seed) from the secret scalar; a soft junction adds a derived
// scalar and leaves a key without a seed. The nonce
// of a soft-derived key is random, as in schnorrkel.
func (scheme) Derive(kp subkey.KeyPair, djs []subkey.DeriveJunction) (subkey.KeyPair, error) {
	p, ok := kp.(pair)
	if !ok {
		return nil, errors.New("derive: not an sr25519 key")
	}
	for _, dj := range djs {
		sk := p.schnorrkel()
		if dj.IsHard {
			ms, _, err := sk.HardDeriveMiniSecretKey(nil, dj.ChainCode)
			if err != nil {
				return nil, fmt.Errorf("hard derivation: %w", err)
			}
			seed := ms.Encode()
			if p, err = pairFromSeed(seed[:]); err != nil {
				return nil, err
			}
			continue
		}
		ek, err := schnorrkel.DeriveKeySimple(sk, nil, dj.ChainCode)
		if err != nil {
			return nil, fmt.Errorf("soft derivation: %w", err)
		}
		child, err := ek.Secret()
		if err != nil {
			return nil, fmt.Errorf("soft derivation: %w", err)
		}
		var s [SecretKeyLen]byte
		scalar := child.Encode()
		copy(s[:32], scalar[:])
		if _, err := rand.Read(s[32:]); err != nil {
			return nil, err
		}
		if p, err = pairFromSecret(s); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (scheme) FromPublicKey(b []byte) (subkey.PublicKey, error) {
	return subsr.Scheme{}.FromPublicKey(b)
}
