package protocol

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/nicompute/nicompute/internal/market"
)

// Credentials are what a miner returns for a new lease, encrypted to the
// renter's RSA key: SN27's {username, password, port, version}. Password is
// empty for key-only leases.
type Credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Port     int    `json:"port"`
	Version  int    `json:"version"`
}

// RSA key sizes accepted for the renter's public key.
const (
	MinRSABits = 2048
	MaxRSABits = 8192
	// KeyBits is the size GenerateKey uses (SN27 uses 2048).
	KeyBits = 2048
	// MinRSAExponent and MaxRSAExponent bound the public exponent, which
	// must also be odd: what crypto/rsa encrypts with (e = 65537 in
	// practice). An exponent of 1 would send the credentials in clear.
	MinRSAExponent = 3
	MaxRSAExponent = 1<<31 - 1
)

// ParsePublicKey parses a renter's RSA public key in PEM: SPKI ("PUBLIC
// KEY", what SN27 sends) or PKCS#1 ("RSA PUBLIC KEY"). Keys outside
// [2048, 8192] bits, with an even modulus, or with an exponent that is even
// or outside [MinRSAExponent, MaxRSAExponent] are refused, so every key
// accepted can be encrypted to. Errors are EINVALID.
func ParsePublicKey(pemText string) (*rsa.PublicKey, error) {
	block, rest := pem.Decode([]byte(strings.TrimSpace(pemText)))
	if block == nil {
		return nil, market.Errorf(market.EINVALID, "public_key is not a PEM block")
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, market.Errorf(market.EINVALID, "public_key has data after the PEM block")
	}
	var pub *rsa.PublicKey
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, market.Errorf(market.EINVALID, "public_key: %v", err)
		}
		var ok bool
		if pub, ok = k.(*rsa.PublicKey); !ok {
			return nil, market.Errorf(market.EINVALID, "public_key is not an RSA key")
		}
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, market.Errorf(market.EINVALID, "public_key: %v", err)
		}
		pub = k
	default:
		return nil, market.Errorf(market.EINVALID, "public_key PEM type %q is not an RSA public key", trunc(block.Type, 40))
	}
	if bits := pub.N.BitLen(); bits < MinRSABits || bits > MaxRSABits {
		return nil, market.Errorf(market.EINVALID, "public_key is %d bits; want %d to %d", bits, MinRSABits, MaxRSABits)
	}
	if pub.N.Bit(0) == 0 {
		return nil, market.Errorf(market.EINVALID, "public_key modulus is even")
	}
	if pub.E < MinRSAExponent || pub.E > MaxRSAExponent || pub.E%2 == 0 {
		return nil, market.Errorf(market.EINVALID, "public_key exponent %d is not an odd number from %d to %d", pub.E, MinRSAExponent, MaxRSAExponent)
	}
	return pub, nil
}

// EncryptCredentials encrypts c to the renter's key with RSA-OAEP (SHA-256,
// MGF1-SHA-256, no label) and returns base64, as SN27 miners do.
func EncryptCredentials(pub *rsa.PublicKey, c Credentials) (string, error) {
	plain, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, plain, nil)
	if err != nil {
		return "", fmt.Errorf("encrypt credentials: %w", err)
	}
	return base64.StdEncoding.EncodeToString(ct), nil
}

// DecryptCredentials reverses EncryptCredentials with the renter's key.
func DecryptCredentials(priv *rsa.PrivateKey, info string) (Credentials, error) {
	var c Credentials
	ct, err := base64.StdEncoding.DecodeString(strings.TrimSpace(info))
	if err != nil {
		return c, fmt.Errorf("credentials are not base64: %w", err)
	}
	plain, err := rsa.DecryptOAEP(sha256.New(), nil, priv, ct, nil)
	if err != nil {
		return c, fmt.Errorf("decrypt credentials: %w", err)
	}
	if err := json.Unmarshal(plain, &c); err != nil {
		return c, fmt.Errorf("credentials are not JSON: %w", err)
	}
	return c, nil
}

// GenerateKey makes a renter key pair and returns it with its SPKI PEM
// public key (the public_key field of an Allocate).
func GenerateKey() (*rsa.PrivateKey, string, error) {
	priv, err := rsa.GenerateKey(rand.Reader, KeyBits)
	if err != nil {
		return nil, "", err
	}
	pemText, err := PublicKeyPEM(&priv.PublicKey)
	return priv, pemText, err
}

// PublicKeyPEM encodes a public key as SPKI PEM.
func PublicKeyPEM(pub *rsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// PrivateKeyPEM encodes a private key as PKCS#8 PEM (for storing a renter
// key on disk with mode 0600).
func PrivateKeyPEM(priv *rsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey parses a PKCS#8 or PKCS#1 RSA private key PEM.
func ParsePrivateKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, fmt.Errorf("not a PEM private key")
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("private key is not RSA")
		}
		return rk, nil
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	}
	return nil, fmt.Errorf("unsupported private key PEM type %q", block.Type)
}

// PublicKeyFingerprint is a stable identifier of a renter key (SHA-256 of
// its DER encoding, hex) used to record lease ownership without storing or
// comparing PEM text, which has several encodings of one key.
func PublicKeyFingerprint(pub *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return fmt.Sprintf("%x", sum[:])
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
