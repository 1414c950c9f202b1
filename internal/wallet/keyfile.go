// Package wallet reads and writes Bittensor wallets: a directory per
// coldkey under the wallet path holding "coldkey" (usually encrypted),
// "coldkeypub.txt" and "hotkeys/<name>" (plus "hotkeys/<name>pub.txt"),
// each a JSON keyfile in the format of Bittensor's btwallet, with sr25519
// keys from package keys. Encrypted keyfiles use btwallet's "$NACL" format
// (Argon2i key from the password, NaCl secretbox); the legacy Ansible Vault
// and Fernet formats of older Bittensor releases are read too.
package wallet

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/nicompute/nicompute/internal/keys"
)

// Errors callers can test with errors.Is. Missing files are reported with
// errors wrapping fs.ErrNotExist, and refusals to replace a file with errors
// wrapping fs.ErrExist.
var (
	// ErrCorrupt marks a keyfile that cannot be decoded or whose fields
	// disagree (e.g. a secret key that does not match publicKey).
	ErrCorrupt = errors.New("corrupt keyfile")
	// ErrWrongPassword marks a failed decryption (a wrong password, or an
	// encrypted file damaged so that its authentication fails).
	ErrWrongPassword = errors.New("wrong password")
	// ErrEncrypted marks an encrypted keyfile read without a password.
	ErrEncrypted = errors.New("keyfile is encrypted")
)

// keyfileJSON is the JSON object btwallet writes. Every field is a string or
// null; btwallet omits absent fields and older Python releases write null.
type keyfileJSON struct {
	AccountID    *string `json:"accountId,omitempty"`
	PublicKey    *string `json:"publicKey,omitempty"`
	PrivateKey   *string `json:"privateKey,omitempty"`
	SecretPhrase *string `json:"secretPhrase,omitempty"`
	SecretSeed   *string `json:"secretSeed,omitempty"`
	SS58Address  *string `json:"ss58Address,omitempty"`
}

// Keyfile is a decoded plaintext keyfile.
type Keyfile struct {
	// SS58 is the account address (prefix 42).
	SS58 string
	// PublicKey is the 32-byte public key.
	PublicKey []byte
	// Keypair is the key pair, or nil for a public-only file such as
	// coldkeypub.txt.
	Keypair *keys.Keypair
}

// MarshalKeyfile returns the plaintext keyfile of kp in btwallet's format:
// accountId, publicKey, privateKey (the 64-byte schnorrkel secret key),
// secretPhrase (when the bare mnemonic reproduces the key), secretSeed
// (when known) and ss58Address; hex fields carry a 0x prefix.
func MarshalKeyfile(kp *keys.Keypair) []byte {
	pub := hex0x(kp.PublicKey())
	priv := hex0x(kp.SecretKey())
	ss58 := kp.SS58()
	f := keyfileJSON{AccountID: &pub, PublicKey: &pub, PrivateKey: &priv, SS58Address: &ss58}
	if m := kp.Mnemonic(); m != "" {
		f.SecretPhrase = &m
	}
	if s := kp.Seed(); s != nil {
		seed := hex0x(s)
		f.SecretSeed = &seed
	}
	return mustMarshal(f)
}

// MarshalPublicKeyfile returns the keyfile of a public key alone, as
// coldkeypub.txt and hotkeys/<name>pub.txt hold it.
func MarshalPublicKeyfile(pub []byte) ([]byte, error) {
	if len(pub) != keys.PublicKeyLen {
		return nil, fmt.Errorf("public key must be %d bytes, got %d", keys.PublicKeyLen, len(pub))
	}
	h := hex0x(pub)
	ss58 := keys.SS58Encode(pub)
	return mustMarshal(keyfileJSON{AccountID: &h, PublicKey: &h, SS58Address: &ss58}), nil
}

func mustMarshal(f keyfileJSON) []byte {
	b, err := json.Marshal(f)
	if err != nil {
		panic(err) // only strings: cannot fail
	}
	return b
}

func hex0x(b []byte) string { return "0x" + hex.EncodeToString(b) }

// ParseKeyfile decodes a plaintext keyfile. The key pair comes from
// secretPhrase or secretSeed (which must agree), else from privateKey, read
// in schnorrkel's canonical form (what Bittensor writes) or, failing that,
// in the ed25519-expanded form; it must match publicKey, accountId and
// ss58Address, which must agree with each other. A file without secrets is
// public-only (coldkeypub.txt); a very old coldkeypub.txt holding only a
// 0x-prefixed hex public key is accepted. Errors wrap ErrCorrupt, or
// ErrEncrypted for encrypted data.
func ParseKeyfile(data []byte) (*Keyfile, error) {
	if m := EncryptionMethod(data); m != "" {
		return nil, fmt.Errorf("%w (%s)", ErrEncrypted, m)
	}
	if !utf8.Valid(data) {
		return nil, corrupt("not UTF-8 text")
	}
	var f keyfileJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		if pub, ok := bareHexPublicKey(data); ok {
			return &Keyfile{SS58: keys.SS58Encode(pub), PublicKey: pub}, nil
		}
		return nil, corrupt("not a JSON keyfile: %s", jsonErr(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, corrupt("trailing data after the JSON object")
	}

	pub, err := publicFields(f)
	if err != nil {
		return nil, err
	}
	kp, err := secretFields(f)
	if err != nil {
		return nil, err
	}
	switch {
	case kp == nil && pub == nil:
		return nil, corrupt("no key material (publicKey, ss58Address or a secret)")
	case kp == nil:
		return &Keyfile{SS58: keys.SS58Encode(pub), PublicKey: pub}, nil
	case pub != nil && !bytes.Equal(pub, kp.PublicKey()):
		return nil, corrupt("the secret key belongs to %s, not to the file's publicKey/ss58Address %s",
			kp.SS58(), keys.SS58Encode(pub))
	}
	return &Keyfile{SS58: kp.SS58(), PublicKey: kp.PublicKey(), Keypair: kp}, nil
}

// publicFields returns the public key named by publicKey, accountId and
// ss58Address (nil when none is present), checking that they agree.
func publicFields(f keyfileJSON) ([]byte, error) {
	var pub []byte
	var from string
	check := func(field string, b []byte) error {
		if pub == nil {
			pub, from = b, field
			return nil
		}
		if !bytes.Equal(pub, b) {
			return corrupt("%s and %s name different keys", from, field)
		}
		return nil
	}
	for _, fld := range []struct {
		name string
		v    *string
	}{{"publicKey", f.PublicKey}, {"accountId", f.AccountID}} {
		if fld.v == nil {
			continue
		}
		b, err := decodeHexField(*fld.v, keys.PublicKeyLen)
		if err != nil {
			return nil, corrupt("%s: %v", fld.name, err)
		}
		if err := check(fld.name, b); err != nil {
			return nil, err
		}
	}
	if f.SS58Address != nil {
		b, err := keys.PublicKeyFromSS58(strings.TrimSpace(*f.SS58Address))
		if err != nil {
			return nil, corrupt("ss58Address: %v", err)
		}
		if err := check("ss58Address", b); err != nil {
			return nil, err
		}
	}
	return pub, nil
}

// secretFields derives the key pair from the secret fields, in the order
// Bittensor's loaders use them: secretPhrase and secretSeed (which must
// agree when both are present; btwallet reads the phrase first, Python
// Bittensor the seed), then privateKey only when neither is usable. A
// malformed secretSeed is skipped: btwallet can write a garbled secretSeed
// for seeds that happen to be valid UTF-8. It returns nil, nil when the
// file holds no secret.
func secretFields(f keyfileJSON) (*keys.Keypair, error) {
	var phraseKey, seedKey *keys.Keypair
	var seedErr error
	if f.SecretPhrase != nil {
		kp, err := keys.FromMnemonic(*f.SecretPhrase, "")
		if err != nil {
			return nil, corrupt("secretPhrase: %v", err)
		}
		phraseKey = kp
	}
	if f.SecretSeed != nil {
		b, err := decodeHexField(*f.SecretSeed, keys.SeedLen)
		if err == nil {
			seedKey, err = keys.FromSeed(b)
		}
		if err != nil {
			seedErr = corrupt("secretSeed: %v", err)
		}
	}
	switch {
	case phraseKey != nil && seedKey != nil:
		if phraseKey.SS58() != seedKey.SS58() {
			return nil, corrupt("secretPhrase and secretSeed are different keys")
		}
		return phraseKey, nil
	case phraseKey != nil:
		return phraseKey, nil
	case seedKey != nil:
		return seedKey, nil
	case f.PrivateKey != nil:
		return privateKey(*f.PrivateKey)
	}
	return nil, seedErr
}

// privateKey decodes a 64-byte secret key, canonical first. The
// ed25519-expanded form (scalar times 8) is never a canonical scalar, so
// the two cannot be confused.
func privateKey(s string) (*keys.Keypair, error) {
	b, err := decodeHexField(s, keys.SecretKeyLen)
	if err != nil {
		return nil, corrupt("privateKey: %v", err)
	}
	kp, err := keys.FromSecretKey(b)
	if err == nil {
		return kp, nil
	}
	kp, err2 := keys.FromEd25519SecretKey(b)
	if err2 != nil {
		return nil, corrupt("privateKey: %v", err)
	}
	return kp, nil
}

func decodeHexField(s string, n int) ([]byte, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "0x") && !strings.HasPrefix(s, "0X") {
		// btwallet and Python Bittensor always write 0x; accept bare hex.
		if len(s) != 2*n {
			return nil, fmt.Errorf("want 0x and %d hex digits", 2*n)
		}
	} else {
		s = s[2:]
	}
	if len(s) != 2*n {
		return nil, fmt.Errorf("want %d bytes of hex, got %d characters", n, len(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("not hex")
	}
	return b, nil
}

// bareHexPublicKey accepts the content "0x<64 hex digits>".
func bareHexPublicKey(data []byte) ([]byte, bool) {
	s := strings.TrimSpace(string(data))
	if !strings.HasPrefix(s, "0x") {
		return nil, false
	}
	b, err := decodeHexField(s, keys.PublicKeyLen)
	return b, err == nil
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// jsonErr shortens a JSON error without quoting file content (which may be
// secret).
func jsonErr(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("field %s must be a string or null", te.Field)
		}
		return "not a JSON object of strings"
	}
	if errors.Is(err, io.EOF) {
		return "empty file"
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "truncated JSON"
	}
	return "invalid JSON"
}
