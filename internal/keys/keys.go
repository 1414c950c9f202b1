// Package keys implements sr25519 key pairs as Substrate and Bittensor use
// them: keys from a BIP-39 mnemonic (Substrate's entropy-based seed), a
// 32-byte mini secret, a 64-byte schnorrkel secret key, or a secret URI with
// hard (//) and soft (/) derivation junctions and an optional ///password;
// signatures with the "substrate" signing context; SS58 addresses (prefix 42
// by default).
package keys

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	schnorrkel "github.com/ChainSafe/go-schnorrkel"
	"github.com/cosmos/go-bip39"
	"github.com/vedhavyas/go-subkey/v2"
)

// SS58Prefix is the generic Substrate address format Bittensor uses.
const SS58Prefix = 42

// Sizes in bytes.
const (
	PublicKeyLen = 32
	SignatureLen = 64
	// SeedLen is the size of a mini secret key (Substrate's "seed").
	SeedLen = 32
	// SecretKeyLen is the size of a schnorrkel secret key: the secret
	// scalar in canonical form followed by the 32-byte nonce seed. This is
	// what sp_core's to_raw_vec and Bittensor's keyfile "privateKey" hold.
	SecretKeyLen = 64
)

// Keypair is an sr25519 key pair. The zero value is not usable. Its String
// and LogValue methods show the address only, never secret material.
type Keypair struct {
	p    pair
	ss58 string
	// mnemonic is the BIP-39 phrase that alone reproduces this key (no
	// password, no derivation path); empty otherwise.
	mnemonic string
}

func newKeypair(p pair, mnemonic string) *Keypair {
	return &Keypair{p: p, ss58: subkey.SS58Encode(p.pub[:], SS58Prefix), mnemonic: mnemonic}
}

// FromSeed returns the key pair of a 32-byte mini secret key.
func FromSeed(seed []byte) (*Keypair, error) {
	if len(seed) != SeedLen {
		return nil, fmt.Errorf("seed must be %d bytes, got %d", SeedLen, len(seed))
	}
	p, err := pairFromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	return newKeypair(p, ""), nil
}

// FromSeedHex parses a 0x-prefixed (or bare) hex mini secret.
func FromSeedHex(s string) (*Keypair, error) {
	b, err := decodeHex(s)
	if err != nil {
		return nil, fmt.Errorf("seed is not hex: %w", err)
	}
	return FromSeed(b)
}

// FromSecretKey returns the key pair of a 64-byte schnorrkel secret key in
// its canonical encoding (scalar || nonce), as sp_core and Bittensor store
// it. A scalar that is not reduced modulo the group order is rejected.
func FromSecretKey(secret []byte) (*Keypair, error) {
	if len(secret) != SecretKeyLen {
		return nil, fmt.Errorf("secret key must be %d bytes, got %d", SecretKeyLen, len(secret))
	}
	p, err := pairFromSecret([SecretKeyLen]byte(secret))
	if err != nil {
		return nil, err
	}
	return newKeypair(p, ""), nil
}

// FromEd25519SecretKey returns the key pair of a 64-byte secret key in
// schnorrkel's ed25519-compatible encoding (the scalar multiplied by the
// cofactor 8, then the nonce), the form polkadot-js exports.
func FromEd25519SecretKey(secret []byte) (*Keypair, error) {
	if len(secret) != SecretKeyLen {
		return nil, fmt.Errorf("secret key must be %d bytes, got %d", SecretKeyLen, len(secret))
	}
	var s [SecretKeyLen]byte
	copy(s[:], secret)
	divideByCofactor((*[32]byte)(s[:32]))
	p, err := pairFromSecret(s)
	if err != nil {
		return nil, err
	}
	return newKeypair(p, ""), nil
}

// FromMnemonic returns the key pair of a BIP-39 mnemonic (checksum verified)
// with an optional password, as Substrate derives it. The key remembers the
// phrase (see Mnemonic) only when password is empty.
func FromMnemonic(phrase, password string) (*Keypair, error) {
	phrase = NormalizeMnemonic(phrase)
	if err := ValidateMnemonic(phrase); err != nil {
		return nil, err
	}
	p, err := pairFromPhrase(phrase, password)
	if err != nil {
		return nil, fmt.Errorf("mnemonic: %w", err)
	}
	m := ""
	if password == "" {
		m = phrase
	}
	return newKeypair(p, m), nil
}

// FromURI returns the key pair of a Substrate secret URI:
// "<mnemonic or 0xseed>[//hard][/soft]...[///password]". A URI that starts
// with a junction uses Substrate's development phrase, so "//Alice" is the
// well-known development account. A key whose last junction is soft has no
// seed.
func FromURI(uri string) (*Keypair, error) {
	uri = strings.TrimSpace(uri)
	if uri == "" {
		return nil, errors.New("empty secret URI")
	}
	phrase, rest := uri, ""
	if i := strings.Index(uri, "/"); i >= 0 {
		phrase, rest = uri[:i], uri[i:]
	}
	phrase = strings.TrimSpace(phrase)
	isHex := strings.HasPrefix(phrase, "0x")
	if phrase != "" && !isHex {
		phrase = NormalizeMnemonic(phrase)
		if err := ValidateMnemonic(phrase); err != nil {
			return nil, err
		}
	}
	kp, err := subkey.DeriveKeyPair(scheme{}, phrase+rest)
	if err != nil {
		return nil, fmt.Errorf("secret URI: %w", err)
	}
	p, ok := kp.(pair)
	if !ok {
		return nil, errors.New("secret URI: unexpected key type")
	}
	m := ""
	if rest == "" && !isHex && phrase != "" {
		m = phrase
	}
	return newKeypair(p, m), nil
}

// NewMnemonic returns a fresh BIP-39 English mnemonic of 12, 15, 18, 21 or
// 24 words.
func NewMnemonic(words int) (string, error) {
	bits := map[int]int{12: 128, 15: 160, 18: 192, 21: 224, 24: 256}[words]
	if bits == 0 {
		return "", fmt.Errorf("mnemonic length must be 12, 15, 18, 21 or 24 words, not %d", words)
	}
	ent, err := bip39.NewEntropy(bits)
	if err != nil {
		return "", err
	}
	return bip39.NewMnemonic(ent)
}

// NormalizeMnemonic lower-cases and collapses whitespace.
func NormalizeMnemonic(phrase string) string {
	return strings.Join(strings.Fields(strings.ToLower(phrase)), " ")
}

// ValidateMnemonic checks word count, vocabulary and checksum.
func ValidateMnemonic(phrase string) error {
	n := len(strings.Fields(phrase))
	switch n {
	case 12, 15, 18, 21, 24:
	default:
		return fmt.Errorf("invalid mnemonic: %d words (want 12, 15, 18, 21 or 24)", n)
	}
	if _, err := bip39.MnemonicToByteArray(phrase); err != nil {
		return fmt.Errorf("invalid mnemonic: %v", err)
	}
	return nil
}

// SS58 returns the address with prefix 42.
func (k *Keypair) SS58() string { return k.ss58 }

// PublicKey returns the 32-byte public key.
func (k *Keypair) PublicKey() []byte { return bytes.Clone(k.p.pub[:]) }

// Seed returns the 32-byte mini secret, or nil when the key was soft-derived
// or made from a secret key and has none.
func (k *Keypair) Seed() []byte { return bytes.Clone(k.p.seed) }

// Mnemonic returns the BIP-39 phrase that reproduces this key on its own,
// or "" when there is none (keys from a seed, a secret key, a derivation
// path or a mnemonic with a password).
func (k *Keypair) Mnemonic() string { return k.mnemonic }

// SecretKey returns the 64-byte schnorrkel secret key (canonical scalar ||
// nonce), the form Bittensor keyfiles store as "privateKey".
func (k *Keypair) SecretKey() []byte { return bytes.Clone(k.p.secret[:]) }

// Sign signs msg with the "substrate" signing context (64 bytes).
func (k *Keypair) Sign(msg []byte) ([]byte, error) {
	sig, err := k.p.Sign(msg)
	if err != nil {
		return nil, fmt.Errorf("sr25519 sign: %w", err)
	}
	return sig, nil
}

// Verify checks a signature made by this key pair.
func (k *Keypair) Verify(msg, sig []byte) bool {
	ok, err := VerifyPublic(k.p.pub[:], msg, sig)
	return err == nil && ok
}

// String returns the SS58 address; it never shows secret material.
func (k *Keypair) String() string { return k.ss58 }

// GoString is like String, so %#v does not print secrets either.
func (k *Keypair) GoString() string { return "keys.Keypair(" + k.ss58 + ")" }

// LogValue logs the address only.
func (k *Keypair) LogValue() slog.Value { return slog.StringValue(k.ss58) }

// PublicKeyFromSS58 decodes an SS58 address (any prefix) to its 32-byte
// public key, verifying the checksum.
func PublicKeyFromSS58(addr string) ([]byte, error) {
	if len(addr) < 40 || len(addr) > 60 {
		return nil, fmt.Errorf("invalid SS58 address %q: bad length", trunc(addr))
	}
	_, pub, err := subkey.SS58Decode(addr)
	if err != nil {
		return nil, fmt.Errorf("invalid SS58 address %q: %v", trunc(addr), err)
	}
	if len(pub) != PublicKeyLen {
		return nil, fmt.Errorf("invalid SS58 address %q: %d-byte account id", trunc(addr), len(pub))
	}
	return pub, nil
}

// SS58Encode encodes a 32-byte public key with prefix 42.
func SS58Encode(pub []byte) string { return subkey.SS58Encode(pub, SS58Prefix) }

// ValidSS58 reports whether addr is a well-formed SS58 address of a 32-byte
// account.
func ValidSS58(addr string) bool {
	_, err := PublicKeyFromSS58(addr)
	return err == nil
}

// Verify checks an sr25519 signature of msg by the account with SS58 address
// addr. It returns an error for a malformed address or signature and false
// for a well-formed signature that does not verify.
func Verify(addr string, msg, sig []byte) (bool, error) {
	pub, err := PublicKeyFromSS58(addr)
	if err != nil {
		return false, err
	}
	return VerifyPublic(pub, msg, sig)
}

// VerifyPublic checks an sr25519 signature against a raw public key.
func VerifyPublic(pub, msg, sig []byte) (bool, error) {
	if len(sig) != SignatureLen {
		return false, fmt.Errorf("signature must be %d bytes, got %d", SignatureLen, len(sig))
	}
	if sig[63]&0x80 == 0 {
		return false, errors.New("signature is not marked as sr25519 (schnorrkel)")
	}
	if len(pub) != PublicKeyLen {
		return false, fmt.Errorf("public key must be %d bytes, got %d", PublicKeyLen, len(pub))
	}
	pk, err := schnorrkel.NewPublicKey([PublicKeyLen]byte(pub))
	if err != nil {
		return false, fmt.Errorf("public key: %w", err)
	}
	var s schnorrkel.Signature
	if err := s.Decode([SignatureLen]byte(sig)); err != nil {
		return false, nil
	}
	ok, err := pk.Verify(&s, signingContext(msg))
	return err == nil && ok, nil
}

func decodeHex(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		s = s[2:]
	}
	return hex.DecodeString(s)
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
