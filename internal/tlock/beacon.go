// Package tlock is timelock encryption to a drand-style beacon round, in the
// exact form Bittensor's chain decrypts (commit-reveal weights, CRv4): the
// Rust `tle` crate's TLECiphertext at the revision subtensor pins
// (ideal-lab5/timelock 5416406), which is Boneh–Franklin FullIdent IBE on
// BLS12-381 with the beacon's public key in G2 and its signatures in G1
// (drand's bls-unchained-g1-rfc9380 scheme, as drand's quicknet uses), and
// an AES-256-GCM body. It also verifies beacon signatures, and signs them
// for the embedded development chain's own beacon.
//
// The curve, pairing and hash-to-curve are cloudflare/circl's; this package
// only lays out bytes. Identities are SHA-256 of the round as a big-endian
// u64, hashed to G1 with RFC 9380 (SSWU, random oracle) under
// DST. Points travel in the zcash/IETF compressed encoding, which is also
// what ark-bls12-381 0.4 writes; the pairing output is serialised as
// arkworks does (Fp12 = c0 ‖ c1 down the tower, each Fp little-endian),
// which is the byte reversal of circl's big-endian, c1-first encoding.
//
// The package does no I/O.
package tlock

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	bls "github.com/cloudflare/circl/ecc/bls12381"
)

// DST is the domain separation tag of the beacon signatures
// (bls-unchained-g1-rfc9380).
const DST = "BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"

// Sizes of the compressed encodings.
const (
	PublicKeySize = bls.G2SizeCompressed // 96
	SignatureSize = bls.G1SizeCompressed // 48
	SecretKeySize = bls.ScalarSize       // 32
)

// Drand quicknet, the beacon Bittensor's chain ingests (drand chain hash
// 52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971).
const (
	QuicknetPublicKey = "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a"
	QuicknetGenesis   = 1692803367 // unix seconds of round 1
	QuicknetPeriod    = 3 * time.Second
)

// Beacon describes a randomness beacon: its public key (G2, compressed), the
// time of round 1 and the time between rounds. Round r is published at
// Genesis + (r-1)·Period.
type Beacon struct {
	PublicKey []byte
	Genesis   time.Time
	Period    time.Duration
}

// Quicknet returns drand quicknet's parameters.
func Quicknet() Beacon {
	pk, _ := hex.DecodeString(QuicknetPublicKey) // a constant: always valid hex
	return Beacon{PublicKey: pk, Genesis: time.Unix(QuicknetGenesis, 0), Period: QuicknetPeriod}
}

// Validate checks the public key is a point of G2 and the period positive.
func (b Beacon) Validate() error {
	if b.Period <= 0 {
		return errors.New("beacon period must be positive")
	}
	if _, err := parseG2(b.PublicKey); err != nil {
		return fmt.Errorf("beacon public key: %w", err)
	}
	return nil
}

// RoundAt returns the newest round published at t (0 before Genesis).
func (b Beacon) RoundAt(t time.Time) uint64 {
	if b.Period <= 0 || t.Before(b.Genesis) {
		return 0
	}
	return uint64(t.Sub(b.Genesis)/b.Period) + 1
}

// TimeOf returns when round is published.
func (b Beacon) TimeOf(round uint64) time.Time {
	if round == 0 {
		return b.Genesis
	}
	steps := round - 1
	if b.Period > 0 && steps > uint64(math.MaxInt64/int64(b.Period)) {
		return time.Unix(math.MaxInt64/2, 0) // far beyond any clock
	}
	return b.Genesis.Add(time.Duration(steps) * b.Period)
}

// Identity is the IBE identity of a round: SHA-256 of the round as a
// big-endian u64 (the message drand signs).
func Identity(round uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], round)
	h := sha256.Sum256(b[:])
	return h[:]
}

// hashRound maps a round's identity to G1.
func hashRound(round uint64) *bls.G1 {
	var q bls.G1
	q.Hash(Identity(round), []byte(DST))
	return &q
}

// Verify checks that sig is the beacon's signature of round:
// e(sig, g2) = e(H(round), pk).
func (b Beacon) Verify(round uint64, sig []byte) error {
	pk, err := parseG2(b.PublicKey)
	if err != nil {
		return fmt.Errorf("beacon public key: %w", err)
	}
	s, err := parseG1(sig)
	if err != nil {
		return fmt.Errorf("signature of round %d: %w", round, err)
	}
	// e(sig, -g2) · e(H(round), pk) = 1
	negG2 := bls.G2Generator()
	negG2.Neg()
	if !bls.ProdPairFrac([]*bls.G1{s, hashRound(round)}, []*bls.G2{negG2, pk}, []int{1, 1}).IsIdentity() {
		return fmt.Errorf("signature of round %d does not verify under the beacon's public key", round)
	}
	return nil
}

func parseG1(b []byte) (*bls.G1, error) {
	if len(b) != SignatureSize {
		return nil, fmt.Errorf("want a %d-byte compressed G1 point, got %d bytes", SignatureSize, len(b))
	}
	var p bls.G1
	if err := p.SetBytes(b); err != nil {
		return nil, fmt.Errorf("not a point of G1: %w", err)
	}
	if p.IsIdentity() {
		return nil, errors.New("the point at infinity")
	}
	return &p, nil
}

func parseG2(b []byte) (*bls.G2, error) {
	if len(b) != PublicKeySize {
		return nil, fmt.Errorf("want a %d-byte compressed G2 point, got %d bytes", PublicKeySize, len(b))
	}
	var p bls.G2
	if err := p.SetBytes(b); err != nil {
		return nil, fmt.Errorf("not a point of G2: %w", err)
	}
	if p.IsIdentity() {
		return nil, errors.New("the point at infinity")
	}
	return &p, nil
}

// SecretKey is a beacon's signing key (a scalar), for the embedded chain's
// own beacon.
type SecretKey struct{ s bls.Scalar }

// GenerateKey draws a non-zero key from rand.
func GenerateKey(rand io.Reader) (*SecretKey, error) {
	k := &SecretKey{}
	for range 8 {
		if err := k.s.Random(rand); err != nil {
			return nil, fmt.Errorf("generate beacon key: %w", err)
		}
		if k.s.IsZero() == 0 {
			return k, nil
		}
	}
	return nil, errors.New("generate beacon key: the random source keeps returning zero")
}

// ParseSecretKey decodes a key written by Bytes.
func ParseSecretKey(b []byte) (*SecretKey, error) {
	if len(b) != SecretKeySize {
		return nil, fmt.Errorf("beacon key: want %d bytes, got %d", SecretKeySize, len(b))
	}
	k := &SecretKey{}
	if err := k.s.UnmarshalBinary(b); err != nil || k.s.IsZero() == 1 {
		return nil, errors.New("beacon key: not a non-zero scalar below the group order")
	}
	return k, nil
}

// Bytes encodes the key (32 bytes, big-endian).
func (k *SecretKey) Bytes() []byte {
	b, _ := k.s.MarshalBinary() // cannot fail
	return b
}

// PublicKey returns the key's public key, compressed in G2.
func (k *SecretKey) PublicKey() []byte {
	var p bls.G2
	p.ScalarMult(&k.s, bls.G2Generator())
	return p.BytesCompressed()
}

// Sign returns the signature of round, compressed in G1.
func (k *SecretKey) Sign(round uint64) []byte {
	var s bls.G1
	s.ScalarMult(&k.s, hashRound(round))
	return s.BytesCompressed()
}
