package subtensor

import (
	"errors"
	"fmt"
	"math/big"
)

// Values decoded by type from the metadata registry. Unsigned integers up to
// 64 bits are uint64, wider ones *big.Int; signed ones int64 or *big.Int;
// u8 sequences and arrays are []byte; other sequences, arrays and tuples are
// []any; structs are *composite; enums are *enumValue.

// composite is a decoded struct: field names (empty when unnamed) and values.
type composite struct {
	names []string
	vals  []any
}

func (c *composite) get(name string) (any, bool) {
	for i, n := range c.names {
		if n == name {
			return c.vals[i], true
		}
	}
	return nil, false
}

// enumValue is a decoded enum variant and its fields.
type enumValue struct {
	name   string
	index  uint8
	fields *composite
}

// maxDepth bounds type nesting (recursive types cannot loop forever).
const maxDepth = 48

// stepBudget bounds the work of decoding n bytes: hostile metadata can
// describe types that take no bytes but branch (a struct of two fields of
// its own type), which would otherwise take exponential time. Real values
// take far fewer steps than bytes.
func stepBudget(n int) int { return 4096 + 16*n }

// maxZeroSized bounds collections of values that take no bytes.
const maxZeroSized = 1024

// decodeValue decodes one value of type id from r.
func (m *Metadata) decodeValue(r *reader, id uint32) (any, error) {
	return m.decodeAt(r, id, 0)
}

// decodeAll decodes a value of type id that must use all of b.
func (m *Metadata) decodeAll(b []byte, id uint32) (any, error) {
	r := newReader(b)
	v, err := m.decodeValue(r, id)
	if err != nil {
		return nil, fmt.Errorf("at byte %d: %w", r.off, err)
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	return v, nil
}

func (m *Metadata) decodeAt(r *reader, id uint32, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errors.New("type nesting too deep")
	}
	if r.steps++; r.steps > stepBudget(len(r.buf)) {
		return nil, errors.New("value too complex for its size")
	}
	if int(id) >= len(m.types) {
		return nil, fmt.Errorf("type id %d out of range", id)
	}
	t := &m.types[id]
	switch t.kind {
	case kindComposite:
		return m.decodeFields(r, t.fields, depth)
	case kindVariant:
		idx := r.u8()
		if r.err != nil {
			return nil, r.err
		}
		for i := range t.variants {
			v := &t.variants[i]
			if v.index != idx {
				continue
			}
			c, err := m.decodeFields(r, v.fields, depth)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", v.name, err)
			}
			return &enumValue{name: v.name, index: idx, fields: c}, nil
		}
		return nil, fmt.Errorf("enum %s has no variant %d", t.name(), idx)
	case kindSequence:
		n := r.length()
		if r.err != nil {
			return nil, r.err
		}
		return m.decodeElems(r, t.elem, n, depth)
	case kindArray:
		if uint64(t.length) > uint64(r.remaining())+maxZeroSized {
			return nil, fmt.Errorf("array of %d exceeds the %d bytes left", t.length, r.remaining())
		}
		return m.decodeElems(r, t.elem, int(t.length), depth)
	case kindTuple:
		out := make([]any, len(t.tuple))
		for i, e := range t.tuple {
			v, err := m.decodeAt(r, e, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case kindPrimitive:
		return decodePrimitive(r, t.prim)
	case kindCompact:
		v := r.compact()
		if r.err != nil {
			return nil, r.err
		}
		if bits := m.compactBits(t.elem); bits <= 64 {
			if u, ok := v.(uint64); !ok || bits < 64 && u >= 1<<bits {
				return nil, fmt.Errorf("compact integer %v does not fit in %d bits", v, bits)
			}
		}
		return v, nil
	}
	return nil, fmt.Errorf("cannot decode type %d (%s): bit sequences are not supported", id, t.name())
}

// compactBits is the width of the unsigned primitive a compact encodes:
// SCALE's Compact<u16> of 70000 is malformed, not a larger number. Compacts
// of u128 or of other types report 128 and are not bounded here.
func (m *Metadata) compactBits(elem uint32) int {
	if int(elem) >= len(m.types) || m.types[elem].kind != kindPrimitive {
		return 128
	}
	switch m.types[elem].prim {
	case primU8:
		return 8
	case primU16:
		return 16
	case primU32:
		return 32
	case primU64:
		return 64
	}
	return 128
}

func (m *Metadata) decodeFields(r *reader, fs []field, depth int) (*composite, error) {
	c := &composite{names: make([]string, len(fs)), vals: make([]any, len(fs))}
	for i, f := range fs {
		v, err := m.decodeAt(r, f.typ, depth+1)
		if err != nil {
			if f.name != "" {
				return nil, fmt.Errorf("%s: %w", f.name, err)
			}
			return nil, err
		}
		c.names[i], c.vals[i] = f.name, v
	}
	return c, nil
}

func (m *Metadata) decodeElems(r *reader, elem uint32, n int, depth int) (any, error) {
	if e := &m.types[elem]; e.kind == kindPrimitive && e.prim == primU8 {
		b := r.take(n)
		if r.err != nil {
			return nil, r.err
		}
		return append([]byte(nil), b...), nil
	}
	out := make([]any, 0, min(n, 4096))
	for i := range n {
		start := r.off
		v, err := m.decodeAt(r, elem, depth+1)
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		if r.off == start && n > maxZeroSized {
			return nil, fmt.Errorf("collection of %d zero-sized values", n)
		}
		out = append(out, v)
	}
	return out, nil
}

func decodePrimitive(r *reader, p primKind) (any, error) {
	var v any
	switch p {
	case primBool:
		v = r.bool()
	case primStr:
		v = r.str()
	case primChar:
		v = r.u32()
	case primU8, primU16, primU32, primU64, primU128, primU256:
		v = r.le(primSize[p])
	default: // signed: two's complement, little-endian
		n := primSize[p]
		b := r.take(n)
		if r.err != nil {
			return nil, r.err
		}
		x := leBig(b)
		if b[n-1]&0x80 != 0 {
			x.Sub(x, new(big.Int).Lsh(big.NewInt(1), uint(8*n)))
		}
		if v = x; x.IsInt64() {
			v = x.Int64()
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return v, nil
}

// Accessors. Newtypes (structs of one field, e.g. AccountId32 or NetUid)
// are unwrapped transparently.

func unwrap(v any) any {
	for {
		c, ok := v.(*composite)
		if !ok || len(c.vals) != 1 {
			return v
		}
		v = c.vals[0]
	}
}

// lookup walks named fields.
func lookup(v any, path ...string) (any, error) {
	for _, name := range path {
		c, ok := v.(*composite)
		if !ok {
			return nil, fmt.Errorf("field %s: not a struct", name)
		}
		if v, ok = c.get(name); !ok {
			return nil, fmt.Errorf("field %s missing", name)
		}
	}
	return v, nil
}

// fieldReader extracts typed fields from a decoded struct, remembering the
// first failure.
type fieldReader struct {
	v   any
	err error
}

func (f *fieldReader) get(path ...string) any {
	if f.err != nil {
		return nil
	}
	v, err := lookup(f.v, path...)
	if err != nil {
		f.err = err
		return nil
	}
	return unwrap(v)
}

func (f *fieldReader) fail(path []string, want string, v any) {
	if f.err == nil {
		f.err = fmt.Errorf("field %v: want %s, got %T", path, want, v)
	}
}

// fieldAs extracts a field of Go type T (bool, []byte, []any, …).
func fieldAs[T any](f *fieldReader, path ...string) T {
	v := f.get(path...)
	t, ok := v.(T)
	if !ok {
		f.fail(path, fmt.Sprintf("%T", t), v)
	}
	return t
}

func (f *fieldReader) uint(path ...string) uint64 {
	v := f.get(path...)
	u, ok := asUint64(v)
	if !ok {
		f.fail(path, "unsigned integer ≤ 64 bits", v)
	}
	return u
}

func (f *fieldReader) big(path ...string) *big.Int {
	switch x := f.get(path...).(type) {
	case uint64:
		return new(big.Int).SetUint64(x)
	case *big.Int:
		return x
	default:
		f.fail(path, "unsigned integer", x)
		return new(big.Int)
	}
}

// optionValue reads a decoded Option: the inner value and whether it is
// Some. Anything other than an Option enum is an error.
func optionValue(v any) (any, bool, error) {
	e, ok := v.(*enumValue)
	if !ok {
		return nil, false, fmt.Errorf("want Option, got %T", v)
	}
	switch {
	case e.name == "None" && len(e.fields.vals) == 0:
		return nil, false, nil
	case e.name == "Some" && len(e.fields.vals) == 1:
		return e.fields.vals[0], true, nil
	}
	return nil, false, fmt.Errorf("want Option, got variant %s", e.name)
}

// encodeValue encodes v as type id. It accepts uint64 (any unsigned
// integer or compact), *big.Int (u128), bool, []byte (u8 sequences and
// arrays, or a newtype over them), and []any (sequences, tuples and
// multi-field structs, in field order). Newtypes take the inner value.
func (m *Metadata) encodeValue(b []byte, id uint32, v any) ([]byte, error) {
	return m.encodeAt(b, id, v, 0)
}

func (m *Metadata) encodeAt(b []byte, id uint32, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, errors.New("type nesting too deep")
	}
	t := &m.types[id]
	switch t.kind {
	case kindComposite:
		if len(t.fields) == 1 {
			return m.encodeAt(b, t.fields[0].typ, v, depth+1)
		}
		vs, ok := v.([]any)
		if !ok || len(vs) != len(t.fields) {
			return nil, fmt.Errorf("struct %s: want %d fields", t.name(), len(t.fields))
		}
		for i, f := range t.fields {
			var err error
			if b, err = m.encodeAt(b, f.typ, vs[i], depth+1); err != nil {
				return nil, err
			}
		}
		return b, nil
	case kindTuple:
		vs, ok := v.([]any)
		if !ok || len(vs) != len(t.tuple) {
			return nil, fmt.Errorf("tuple: want %d elements", len(t.tuple))
		}
		for i, e := range t.tuple {
			var err error
			if b, err = m.encodeAt(b, e, vs[i], depth+1); err != nil {
				return nil, err
			}
		}
		return b, nil
	case kindSequence, kindArray:
		e := &m.types[t.elem]
		if raw, ok := v.([]byte); ok && e.kind == kindPrimitive && e.prim == primU8 {
			if t.kind == kindArray && len(raw) != int(t.length) {
				return nil, fmt.Errorf("array: want %d bytes, got %d", t.length, len(raw))
			}
			if t.kind == kindSequence {
				b = appendCompact(b, uint64(len(raw)))
			}
			return append(b, raw...), nil
		}
		vs, ok := v.([]any)
		if !ok || (t.kind == kindArray && len(vs) != int(t.length)) {
			return nil, fmt.Errorf("cannot encode %T as a sequence of type %d", v, t.elem)
		}
		if t.kind == kindSequence {
			b = appendCompact(b, uint64(len(vs)))
		}
		for _, x := range vs {
			var err error
			if b, err = m.encodeAt(b, t.elem, x, depth+1); err != nil {
				return nil, err
			}
		}
		return b, nil
	case kindCompact:
		u, ok := v.(uint64)
		if !ok {
			return nil, fmt.Errorf("compact: want uint64, got %T", v)
		}
		return appendCompact(b, u), nil
	case kindPrimitive:
		return encodePrimitive(b, t.prim, v)
	}
	return nil, fmt.Errorf("cannot encode values of type %d (%s)", id, t.name())
}

func encodePrimitive(b []byte, p primKind, v any) ([]byte, error) {
	switch p {
	case primBool:
		x, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("bool: got %T", v)
		}
		if x {
			return append(b, 1), nil
		}
		return append(b, 0), nil
	case primU8, primU16, primU32, primU64, primU128:
		n := primSize[p]
		var x *big.Int
		switch u := v.(type) {
		case uint64:
			x = new(big.Int).SetUint64(u)
		case *big.Int:
			x = u
		default:
			return nil, fmt.Errorf("u%d: got %T", 8*n, v)
		}
		if x.Sign() < 0 || x.BitLen() > 8*n {
			return nil, fmt.Errorf("%s does not fit in u%d", x, 8*n)
		}
		be := x.FillBytes(make([]byte, n))
		for i := n - 1; i >= 0; i-- {
			b = append(b, be[i])
		}
		return b, nil
	}
	return nil, fmt.Errorf("cannot encode primitive %d", p)
}
