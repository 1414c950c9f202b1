package tlock

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	bls "github.com/cloudflare/circl/ecc/bls12381"
)

// The ciphertext is arkworks' compressed serialisation of tle's
//
//	TLECiphertext { header: Ciphertext { u: G2, v: Vec<u8>, w: Vec<u8> },
//	                body: Vec<u8>, cipher_suite: Vec<u8> }
//
// where a Vec<u8> is its length as a little-endian u64 followed by the
// bytes, u is 96 bytes (zcash flags, as ark-bls12-381 0.4 writes them), v
// and w are 32 bytes, cipher_suite is "AES_GCM_" and body is
//
//	AESOutput { ciphertext: Vec<u8>, nonce: Vec<u8> }
//
// with a 12-byte nonce and the 16-byte GCM tag at the end of ciphertext.
// The IBE header (FullIdent) hides the 32-byte AES key m:
//
//	sigma = SHA-256(t) for a random scalar t (32 bytes, little-endian)
//	r     = SHA-256(sigma ‖ m) as a big-endian integer mod the group order
//	u     = r·g2
//	v     = sigma ⊕ SHA-256(arkworks(e(H(id), r·pk)))
//	w     = m ⊕ SHA-256(sigma)
//
// and decryption with the round's signature s recovers sigma from
// e(s, u) = e(H(id), pk)^r, then m, and checks u = r·g2.

// CipherSuite is the body cipher tle names in every ciphertext.
const CipherSuite = "AES_GCM_"

// Size limits. MaxCiphertextSize is subtensor's MAX_CRV3_COMMIT_SIZE_BYTES:
// a larger commit cannot be submitted.
const (
	MaxCiphertextSize = 5000
	hashSize          = 32
	nonceSize         = 12
	tagSize           = 16
	// Overhead is the size of a ciphertext beyond its plaintext.
	Overhead = PublicKeySize + 2*(8+hashSize) + 8 + (8 + tagSize + 8 + nonceSize) + 8 + len(CipherSuite)
)

// Ciphertext is a decoded TLECiphertext.
type Ciphertext struct {
	U     []byte // r·g2, compressed
	V, W  []byte // 32 bytes each
	Body  []byte // AES-GCM ciphertext and tag
	Nonce []byte // 12 bytes
	Suite []byte
}

// Marshal encodes c as arkworks' serialize_compressed does.
func (c *Ciphertext) Marshal() []byte {
	var body []byte
	body = appendVec(body, c.Body)
	body = appendVec(body, c.Nonce)
	out := make([]byte, 0, Overhead+len(c.Body))
	out = append(out, c.U...)
	out = appendVec(out, c.V)
	out = appendVec(out, c.W)
	out = appendVec(out, body)
	return appendVec(out, c.Suite)
}

func appendVec(b, v []byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(v)))
	return append(b, v...)
}

// reader reads arkworks values from a bounded buffer.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n uint64, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("%s: %d bytes needed, %d left", what, n, len(r.b))
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) vec(what string) []byte {
	l := r.take(8, what+" length")
	if l == nil {
		return nil
	}
	return r.take(binary.LittleEndian.Uint64(l), what)
}

// ParseCiphertext decodes a ciphertext strictly: every length as tle
// writes it, u a point of G2, the AES_GCM_ suite, no trailing bytes, at
// most MaxCiphertextSize bytes.
func ParseCiphertext(b []byte) (*Ciphertext, error) {
	if len(b) > MaxCiphertextSize {
		return nil, fmt.Errorf("timelock ciphertext of %d bytes exceeds the chain's limit of %d", len(b), MaxCiphertextSize)
	}
	r := &reader{b: b}
	c := &Ciphertext{U: r.take(PublicKeySize, "header u")}
	c.V = r.vec("header v")
	c.W = r.vec("header w")
	body := r.vec("body")
	c.Suite = r.vec("cipher suite")
	if r.err != nil {
		return nil, fmt.Errorf("malformed timelock ciphertext: %w", r.err)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("malformed timelock ciphertext: %d trailing bytes", len(r.b))
	}
	br := &reader{b: body}
	c.Body = br.vec("body ciphertext")
	c.Nonce = br.vec("body nonce")
	switch {
	case br.err != nil:
		return nil, fmt.Errorf("malformed timelock ciphertext: %w", br.err)
	case len(br.b) != 0:
		return nil, fmt.Errorf("malformed timelock ciphertext: %d trailing bytes in the body", len(br.b))
	case len(c.V) != hashSize || len(c.W) != hashSize:
		return nil, fmt.Errorf("malformed timelock ciphertext: header v and w must be %d bytes, got %d and %d", hashSize, len(c.V), len(c.W))
	case len(c.Nonce) != nonceSize:
		return nil, fmt.Errorf("malformed timelock ciphertext: nonce of %d bytes, want %d", len(c.Nonce), nonceSize)
	case len(c.Body) < tagSize:
		return nil, fmt.Errorf("malformed timelock ciphertext: body of %d bytes is shorter than the GCM tag", len(c.Body))
	case string(c.Suite) != CipherSuite:
		return nil, fmt.Errorf("malformed timelock ciphertext: cipher suite %q, want %q", c.Suite, CipherSuite)
	}
	if _, err := parseG2(c.U); err != nil {
		return nil, fmt.Errorf("malformed timelock ciphertext: header u: %w", err)
	}
	return c, nil
}

// gtHash is tle's H2: SHA-256 of arkworks' serialisation of a pairing
// output, the byte reversal of circl's encoding.
func gtHash(g *bls.Gt) []byte {
	b, _ := g.MarshalBinary() // cannot fail
	slices.Reverse(b)
	h := sha256.Sum256(b)
	return h[:]
}

// h3 maps sigma ‖ m to a scalar: SHA-256 as a big-endian integer mod r
// (arkworks' from_be_bytes_mod_order).
func h3(sigma, m []byte) *bls.Scalar {
	h := sha256.Sum256(slices.Concat(sigma, m))
	var r bls.Scalar
	r.SetBytes(h[:])
	return &r
}

func xor(a, b []byte) []byte {
	out := make([]byte, len(a))
	for i := range a {
		out[i] = a[i] ^ b[i]
	}
	return out
}

// Encrypt timelock-encrypts msg to round of the beacon with public key pub.
// rand supplies the AES key, the IBE randomness and the GCM nonce.
func Encrypt(pub []byte, round uint64, msg []byte, rand io.Reader) ([]byte, error) {
	if len(msg) > MaxCiphertextSize-Overhead {
		return nil, fmt.Errorf("timelock: %d-byte message exceeds the %d bytes a commit holds", len(msg), MaxCiphertextSize-Overhead)
	}
	pk, err := parseG2(pub)
	if err != nil {
		return nil, fmt.Errorf("timelock: beacon public key: %w", err)
	}
	key := make([]byte, hashSize)
	if _, err := io.ReadFull(rand, key); err != nil {
		return nil, fmt.Errorf("timelock: random key: %w", err)
	}
	var t bls.Scalar
	if err := t.Random(rand); err != nil {
		return nil, fmt.Errorf("timelock: random scalar: %w", err)
	}
	tb, _ := t.MarshalBinary()
	slices.Reverse(tb) // arkworks writes scalars little-endian
	sigmaSum := sha256.Sum256(tb)
	sigma := sigmaSum[:]
	r := h3(sigma, key)

	var u, rpk bls.G2
	u.ScalarMult(r, bls.G2Generator())
	rpk.ScalarMult(r, pk)
	hw := sha256.Sum256(sigma)
	c := &Ciphertext{
		U:     u.BytesCompressed(),
		V:     xor(sigma, gtHash(bls.Pair(hashRound(round), &rpk))),
		W:     xor(key, hw[:]),
		Nonce: make([]byte, nonceSize),
		Suite: []byte(CipherSuite),
	}
	if _, err := io.ReadFull(rand, c.Nonce); err != nil {
		return nil, fmt.Errorf("timelock: random nonce: %w", err)
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	c.Body = aead.Seal(nil, c.Nonce, msg, nil)
	return c.Marshal(), nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("timelock: %w", err)
	}
	return cipher.NewGCM(block)
}

// ErrDecrypt is returned when a ciphertext does not open with the given
// signature: a signature of another round or beacon, or a tampered
// ciphertext.
var ErrDecrypt = errors.New("timelock ciphertext does not decrypt with this round's signature")

// Decrypt opens ciphertext with sig, the beacon's signature of the round it
// was encrypted to. The caller verifies sig against the beacon.
func Decrypt(ciphertext, sig []byte) ([]byte, error) {
	c, err := ParseCiphertext(ciphertext)
	if err != nil {
		return nil, err
	}
	return c.Open(sig)
}

// Open decrypts c with sig.
func (c *Ciphertext) Open(sig []byte) ([]byte, error) {
	s, err := parseG1(sig)
	if err != nil {
		return nil, fmt.Errorf("timelock: round signature: %w", err)
	}
	u, err := parseG2(c.U)
	if err != nil {
		return nil, fmt.Errorf("timelock: header u: %w", err)
	}
	sigma := xor(c.V, gtHash(bls.Pair(s, u)))
	hw := sha256.Sum256(sigma)
	key := xor(c.W, hw[:])
	var check bls.G2
	check.ScalarMult(h3(sigma, key), bls.G2Generator())
	if !check.IsEqual(u) {
		return nil, ErrDecrypt
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	msg, err := aead.Open(nil, c.Nonce, c.Body, nil)
	if err != nil {
		return nil, fmt.Errorf("timelock: body does not authenticate: %w", ErrDecrypt)
	}
	return msg, nil
}
