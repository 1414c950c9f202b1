// Package keys implements sr25519 key pairs as Substrate and Bittensor use
// them: keys from a BIP-39 mnemonic (Substrate's entropy-based seed), a
// 32-byte mini secret, or a secret URI with hard (//) and soft (/)
// derivation junctions and an optional ///password; signatures with the
// "substrate" signing context; SS58 addresses (prefix 42 by default).
package keys

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/cosmos/go-bip39"
	"github.com/vedhavyas/go-subkey/v2"
	"github.com/vedhavyas/go-subkey/v2/sr25519"
)

// SS58Prefix is the generic Substrate address format Bittensor uses.
const SS58Prefix = 42

// PublicKeyLen and SignatureLen are the sr25519 sizes in bytes.
const (
	PublicKeyLen = 32
	SignatureLen = 64
	SeedLen      = 32
)

// Keypair is an sr25519 key pair. The zero value is not usable.
type Keypair struct {
	kp   subkey.KeyPair
	ss58 string
	// seed is the 32-byte mini secret when known (keys from a mnemonic, a
	// seed, or hard-only derivation); nil after soft derivation.
	seed []byte
}

func wrap(kp subkey.KeyPair) *Keypair {
	var seed []byte
	if s := kp.Seed(); len(s) == SeedLen {
		seed = bytes.Clone(s)
	}
	return &Keypair{kp: kp, ss58: subkey.SS58Encode(kp.Public(), SS58Prefix), seed: seed}
}

// FromSeed returns the key pair of a 32-byte mini secret key.
func FromSeed(seed []byte) (*Keypair, error) {
	if len(seed) != SeedLen {
		return nil, fmt.Errorf("seed must be %d bytes, got %d", SeedLen, len(seed))
	}
	kp, err := sr25519.Scheme{}.FromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	return wrap(kp), nil
}

// FromSeedHex parses a 0x-prefixed (or bare) hex mini secret.
func FromSeedHex(s string) (*Keypair, error) {
	b, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), "0x"))
	if err != nil {
		return nil, fmt.Errorf("seed is not hex: %w", err)
	}
	return FromSeed(b)
}

// FromMnemonic returns the key pair of a BIP-39 mnemonic (checksum verified)
// with an optional password, as Substrate derives it.
func FromMnemonic(phrase, password string) (*Keypair, error) {
	phrase = NormalizeMnemonic(phrase)
	if err := ValidateMnemonic(phrase); err != nil {
		return nil, err
	}
	kp, err := sr25519.Scheme{}.FromPhrase(phrase, password)
	if err != nil {
		return nil, fmt.Errorf("mnemonic: %w", err)
	}
	return wrap(kp), nil
}

// FromURI returns the key pair of a Substrate secret URI:
// "<mnemonic or 0xseed>[//hard][/soft]...[///password]". A URI that starts
// with a junction uses Substrate's development phrase, so "//Alice" is the
// well-known development account.
func FromURI(uri string) (*Keypair, error) {
	uri = strings.TrimSpace(uri)
	if uri == "" {
		return nil, errors.New("empty secret URI")
	}
	phrase, _, _ := strings.Cut(uri, "/")
	phrase = strings.TrimSpace(phrase)
	if phrase != "" && !strings.HasPrefix(phrase, "0x") {
		if err := ValidateMnemonic(NormalizeMnemonic(phrase)); err != nil {
			return nil, err
		}
	}
	kp, err := subkey.DeriveKeyPair(sr25519.Scheme{}, uri)
	if err != nil {
		return nil, fmt.Errorf("secret URI: %w", err)
	}
	return wrap(kp), nil
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
func (k *Keypair) PublicKey() []byte { return bytes.Clone(k.kp.Public()) }

// Seed returns the 32-byte mini secret, or nil when the key was soft-derived
// and has none.
func (k *Keypair) Seed() []byte { return bytes.Clone(k.seed) }

// Sign signs msg with the "substrate" signing context (64 bytes).
func (k *Keypair) Sign(msg []byte) ([]byte, error) {
	sig, err := k.kp.Sign(msg)
	if err != nil {
		return nil, fmt.Errorf("sr25519 sign: %w", err)
	}
	return sig, nil
}

// Verify checks a signature made by this key pair.
func (k *Keypair) Verify(msg, sig []byte) bool { return k.kp.Verify(msg, sig) }

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
	v, err := sr25519.Scheme{}.FromPublicKey(pub)
	if err != nil {
		return false, fmt.Errorf("public key: %w", err)
	}
	return v.Verify(msg, sig), nil
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
