package subtensor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"unicode/utf8"
)

// errShort reports input that ends inside a value.
var errShort = errors.New("unexpected end of input")

// reader decodes SCALE (the Substrate codec) from a byte slice. Every length
// prefix is checked against the bytes that are left, so hostile input cannot
// make it allocate more than the input's own size. The first failure sticks:
// later reads return zero values (and lengths of zero, which end loops), and
// err reports it.
type reader struct {
	buf   []byte
	off   int
	err   error
	steps int // work done by type-driven decoding (see stepBudget)
}

func newReader(b []byte) *reader { return &reader{buf: b} }

func (r *reader) remaining() int { return len(r.buf) - r.off }

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// done returns the first failure, or an error when input is left over: a
// value that does not consume all of its bytes was decoded with the wrong
// type.
func (r *reader) done() error {
	if r.err != nil {
		return r.err
	}
	if n := r.remaining(); n != 0 {
		return fmt.Errorf("%d trailing bytes", n)
	}
	return nil
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.remaining() {
		r.fail(errShort)
		return nil
	}
	b := r.buf[r.off : r.off+n]
	r.off += n
	return b
}

func (r *reader) u8() uint8 {
	if b := r.take(1); r.err == nil {
		return b[0]
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.take(4); r.err == nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

// le reads an n-byte little-endian unsigned integer: uint64 when n ≤ 8,
// *big.Int otherwise.
func (r *reader) le(n int) any {
	b := r.take(n)
	if r.err != nil {
		return uint64(0)
	}
	if n <= 8 {
		var v uint64
		for i := n - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		return v
	}
	return leBig(b)
}

func (r *reader) bool() bool {
	switch b := r.u8(); b {
	case 0:
	case 1:
		return true
	default:
		r.fail(fmt.Errorf("invalid bool byte 0x%02x", b))
	}
	return false
}

// option reads an Option tag: false for None, true for Some.
func (r *reader) option() bool {
	switch b := r.u8(); b {
	case 0:
	case 1:
		return true
	default:
		r.fail(fmt.Errorf("invalid option tag 0x%02x", b))
	}
	return false
}

// compact reads a compact-encoded unsigned integer: uint64 when it fits,
// *big.Int otherwise.
func (r *reader) compact() any {
	b0 := r.u8()
	switch b0 & 3 {
	case 0:
		return uint64(b0 >> 2)
	case 1:
		return uint64(b0)>>2 | uint64(r.u8())<<6
	case 2:
		b := r.take(3)
		if r.err != nil {
			return uint64(0)
		}
		v := uint32(b0) | uint32(b[0])<<8 | uint32(b[1])<<16 | uint32(b[2])<<24
		return uint64(v >> 2)
	}
	return r.le(int(b0>>2) + 4)
}

// compactU64 reads a compact integer that must fit in 64 bits.
func (r *reader) compactU64() uint64 {
	u, ok := r.compact().(uint64)
	if !ok {
		r.fail(errors.New("compact integer exceeds 64 bits"))
	}
	return u
}

// length reads a collection length. A collection cannot have more elements
// than bytes left (each element takes at least one byte in every type this
// package decodes), so longer lengths are refused before anything is
// allocated.
func (r *reader) length() int {
	n := r.compactU64()
	if n > uint64(r.remaining()) {
		r.fail(fmt.Errorf("length %d exceeds the %d bytes left", n, r.remaining()))
		return 0
	}
	return int(n)
}

func (r *reader) bytes() []byte { return r.take(r.length()) }

func (r *reader) str() string {
	b := r.bytes()
	if !utf8.Valid(b) {
		r.fail(errors.New("invalid UTF-8 in string"))
		return ""
	}
	return string(b)
}

// skipStrings skips a Vec<String> (metadata docs).
func (r *reader) skipStrings() {
	for range r.length() {
		r.bytes()
	}
}

func leBig(b []byte) *big.Int {
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	return new(big.Int).SetBytes(be)
}

// appendCompact appends v in SCALE compact form.
func appendCompact(b []byte, v uint64) []byte {
	switch {
	case v < 1<<6:
		return append(b, byte(v<<2))
	case v < 1<<14:
		return binary.LittleEndian.AppendUint16(b, uint16(v<<2|1))
	case v < 1<<30:
		return binary.LittleEndian.AppendUint32(b, uint32(v<<2|2))
	}
	n := 8
	for n > 4 && v>>(8*(n-1)) == 0 {
		n--
	}
	b = append(b, byte((n-4)<<2|3))
	for i := range n {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// asUint64 converts a decoded integer (uint64 or *big.Int) to uint64.
func asUint64(v any) (uint64, bool) {
	switch x := v.(type) {
	case uint64:
		return x, true
	case *big.Int:
		if x.Sign() >= 0 && x.IsUint64() {
			return x.Uint64(), true
		}
	}
	return 0, false
}
