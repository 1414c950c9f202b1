package subtensor

import (
	"errors"
	"fmt"
)

// Runtime metadata (frame-metadata V14 and V15): the type registry
// (scale-info's PortableRegistry), pallets with their storage, calls, events,
// constants and errors, the extrinsic format with its transaction
// extensions, and in V15 the runtime APIs with their input and output types.
// Docs are skipped.

// typeKind is a scale-info TypeDef variant, in wire order.
type typeKind uint8

const (
	kindComposite typeKind = iota
	kindVariant
	kindSequence
	kindArray
	kindTuple
	kindPrimitive
	kindCompact
	kindBitSequence
)

// primKind is a scale-info TypeDefPrimitive variant, in wire order.
type primKind uint8

const (
	primBool primKind = iota
	primChar
	primStr
	primU8
	primU16
	primU32
	primU64
	primU128
	primU256
	primI8
	primI16
	primI32
	primI64
	primI128
	primI256
)

// primSize is the encoded size of fixed-size primitives (0 for str).
var primSize = [...]int{1, 4, 0, 1, 2, 4, 8, 16, 32, 1, 2, 4, 8, 16, 32}

type field struct {
	name string
	typ  uint32
}

type variant struct {
	name   string
	index  uint8
	fields []field
	docs   []string
}

type typeDef struct {
	path     []string
	kind     typeKind
	fields   []field   // composite
	variants []variant // variant
	elem     uint32    // sequence, array, compact
	length   uint32    // array
	tuple    []uint32  // tuple
	prim     primKind  // primitive
}

// name is the last path segment ("AccountId32", "Option"), or "".
func (t *typeDef) name() string {
	if len(t.path) == 0 {
		return ""
	}
	return t.path[len(t.path)-1]
}

// storageHasher is frame-metadata's StorageHasher, in wire order.
type storageHasher uint8

const (
	hashBlake2_128 storageHasher = iota
	hashBlake2_256
	hashBlake2_128Concat
	hashTwox128
	hashTwox256
	hashTwox64Concat
	hashIdentity
)

type storageEntry struct {
	name     string
	optional bool // modifier Optional: absent is None; else absent is def
	hashers  []storageHasher
	keys     []uint32 // one type per hasher
	value    uint32
	def      []byte
}

type pallet struct {
	name          string
	index         uint8
	storagePrefix string
	storage       map[string]*storageEntry
	calls         int64 // type id of the call enum, -1 when none
	events        int64
	errors        int64
	constants     map[string][]byte
}

// extension is one transaction extension (signed extension): its
// identifier, the type of the value carried in the extrinsic, and the type
// of the implicit value that is only signed.
type extension struct {
	name       string
	typ        uint32
	additional uint32
}

type apiMethod struct {
	inputs []uint32
	output uint32
}

// Metadata is a decoded runtime metadata.
type Metadata struct {
	Version    uint8
	types      []typeDef
	pallets    []*pallet
	byName     map[string]*pallet
	txVersion  uint8
	extensions []extension
	addrType   int64                // V15: the extrinsic address type; -1 in V14
	sigType    int64                // V15: the extrinsic signature type; -1 in V14
	apis       map[string]apiMethod // "Api_method"
}

// maxTypes bounds the registry size; finney's runtime has about 1,000.
const maxTypes = 1 << 16

// decodeMetadata decodes a "meta"-prefixed RuntimeMetadataPrefixed blob.
func decodeMetadata(b []byte) (*Metadata, error) {
	r := newReader(b)
	if magic := r.take(4); r.err != nil || string(magic) != "meta" {
		return nil, errors.New("decode metadata: missing \"meta\" prefix")
	}
	v := r.u8()
	if r.err != nil {
		return nil, errors.New("decode metadata: missing version")
	}
	if v != 14 && v != 15 {
		return nil, fmt.Errorf("decode metadata: unsupported metadata version %d (want 14 or 15)", v)
	}
	m := &Metadata{Version: v, byName: map[string]*pallet{}, apis: map[string]apiMethod{}, addrType: -1, sigType: -1}
	m.decode(r)
	if err := r.done(); err != nil {
		return nil, fmt.Errorf("decode metadata v%d at byte %d: %w", v, r.off, err)
	}
	return m, nil
}

func (m *Metadata) decode(r *reader) {
	n := r.length()
	if n > maxTypes {
		r.fail(fmt.Errorf("%d types exceed the limit of %d", n, maxTypes))
		return
	}
	m.types = make([]typeDef, n)
	for i := 0; i < n && r.err == nil; i++ {
		if id := r.compactU64(); id != uint64(i) && r.err == nil {
			r.fail(fmt.Errorf("type %d has id %d: registry ids must be sequential", i, id))
		}
		decodeType(r, &m.types[i])
	}
	if r.err != nil {
		return
	}
	if err := m.checkTypes(); err != nil {
		r.fail(err)
		return
	}
	for range r.length() {
		p := m.decodePallet(r)
		m.pallets = append(m.pallets, p)
		m.byName[p.name] = p
	}
	if m.Version == 14 {
		m.typeID(r) // extrinsic type
	}
	m.txVersion = r.u8()
	if m.Version == 15 {
		m.addrType = int64(m.typeID(r))
		m.typeID(r) // call type
		m.sigType = int64(m.typeID(r))
		m.typeID(r) // extra type
	}
	for range r.length() {
		m.extensions = append(m.extensions, extension{name: r.str(), typ: m.typeID(r), additional: m.typeID(r)})
	}
	m.typeID(r) // runtime type
	if m.Version == 14 {
		return
	}
	for range r.length() {
		api := r.str()
		for range r.length() {
			name := r.str()
			var am apiMethod
			for range r.length() {
				r.str()
				am.inputs = append(am.inputs, m.typeID(r))
			}
			am.output = m.typeID(r)
			r.skipStrings()
			m.apis[api+"_"+name] = am
		}
		r.skipStrings()
	}
	for range 3 { // outer enums: call, event, error
		m.typeID(r)
	}
	for range r.length() { // custom values: name, type, value
		r.str()
		m.typeID(r)
		r.bytes()
	}
}

// typeID reads a compact type id and checks it names a registry type.
func (m *Metadata) typeID(r *reader) uint32 {
	id := r.compactU64()
	if id >= uint64(len(m.types)) {
		r.fail(fmt.Errorf("type id %d out of range (%d types)", id, len(m.types)))
		return 0
	}
	return uint32(id)
}

// readID reads a type id inside the registry; ids are range-checked once
// the whole registry is known (checkTypes).
func readID(r *reader) uint32 {
	id := r.compactU64()
	if id > maxTypes {
		r.fail(fmt.Errorf("type id %d out of range", id))
		return 0
	}
	return uint32(id)
}

func decodeType(r *reader, t *typeDef) {
	for range r.length() {
		t.path = append(t.path, r.str())
	}
	for range r.length() { // type parameters: name, Option<type>
		r.str()
		if r.option() {
			r.compactU64()
		}
	}
	t.kind = typeKind(r.u8())
	switch t.kind {
	case kindComposite:
		t.fields = decodeFields(r)
	case kindVariant:
		for range r.length() {
			v := variant{name: r.str(), fields: decodeFields(r), index: r.u8()}
			v.docs = readStrings(r)
			t.variants = append(t.variants, v)
		}
	case kindSequence, kindCompact:
		t.elem = readID(r)
	case kindArray:
		t.length = r.u32()
		t.elem = readID(r)
	case kindTuple:
		for range r.length() {
			t.tuple = append(t.tuple, readID(r))
		}
	case kindPrimitive:
		if p := r.u8(); int(p) < len(primSize) {
			t.prim = primKind(p)
		} else {
			r.fail(fmt.Errorf("unknown primitive %d", p))
		}
	case kindBitSequence:
		readID(r)
		readID(r)
	default:
		r.fail(fmt.Errorf("unknown type definition kind %d", t.kind))
	}
	r.skipStrings()
}

func readStrings(r *reader) []string {
	var out []string
	for range r.length() {
		out = append(out, r.str())
	}
	return out
}

func decodeFields(r *reader) []field {
	var fs []field
	for range r.length() {
		var f field
		if r.option() {
			f.name = r.str()
		}
		f.typ = readID(r)
		if r.option() { // type name
			r.bytes()
		}
		r.skipStrings()
		fs = append(fs, f)
	}
	return fs
}

// optionalID reads an Option<{ty: Compact<u32>}> as -1 or the id.
func (m *Metadata) optionalID(r *reader) int64 {
	if !r.option() {
		return -1
	}
	return int64(m.typeID(r))
}

func (m *Metadata) decodePallet(r *reader) *pallet {
	p := &pallet{name: r.str(), storage: map[string]*storageEntry{}, constants: map[string][]byte{}}
	if r.option() {
		p.storagePrefix = r.str()
		for range r.length() {
			e := m.decodeStorageEntry(r)
			p.storage[e.name] = e
		}
	}
	p.calls = m.optionalID(r)
	p.events = m.optionalID(r)
	for range r.length() { // constants: name, type, value, docs
		name := r.str()
		m.typeID(r)
		p.constants[name] = r.bytes()
		r.skipStrings()
	}
	p.errors = m.optionalID(r)
	p.index = r.u8()
	if m.Version == 15 {
		r.skipStrings()
	}
	return p
}

func (m *Metadata) decodeStorageEntry(r *reader) *storageEntry {
	e := &storageEntry{name: r.str()}
	mod := r.u8()
	if mod > 1 {
		r.fail(fmt.Errorf("entry %s: unknown modifier %d", e.name, mod))
	}
	e.optional = mod == 0
	switch kind := r.u8(); kind {
	case 0: // plain
		e.value = m.typeID(r)
	case 1: // map
		for range r.length() {
			h := r.u8()
			if h > uint8(hashIdentity) {
				r.fail(fmt.Errorf("entry %s: unknown hasher %d", e.name, h))
			}
			e.hashers = append(e.hashers, storageHasher(h))
		}
		key := m.typeID(r)
		e.value = m.typeID(r)
		if r.err != nil {
			return e
		}
		// One hasher: the key type is the key. Several: it is a tuple
		// with one element per hasher.
		if t := &m.types[key]; len(e.hashers) == 1 {
			e.keys = []uint32{key}
		} else if t.kind == kindTuple && len(t.tuple) == len(e.hashers) {
			e.keys = t.tuple
		} else {
			r.fail(fmt.Errorf("entry %s: %d hashers for key type %d", e.name, len(e.hashers), key))
		}
	default:
		r.fail(fmt.Errorf("entry %s: unknown entry type %d", e.name, kind))
	}
	e.def = r.bytes()
	r.skipStrings()
	return e
}

// checkTypes verifies every type id referenced inside the registry exists,
// so decoding never indexes out of range.
func (m *Metadata) checkTypes() error {
	n := uint32(len(m.types))
	bad := func(id uint32) bool { return id >= n }
	for i := range m.types {
		t := &m.types[i]
		for _, f := range t.fields {
			if bad(f.typ) {
				return fmt.Errorf("type %d: field type %d out of range", i, f.typ)
			}
		}
		for _, v := range t.variants {
			for _, f := range v.fields {
				if bad(f.typ) {
					return fmt.Errorf("type %d: variant field type %d out of range", i, f.typ)
				}
			}
		}
		for _, id := range t.tuple {
			if bad(id) {
				return fmt.Errorf("type %d: tuple element %d out of range", i, id)
			}
		}
		if (t.kind == kindSequence || t.kind == kindArray || t.kind == kindCompact) && bad(t.elem) {
			return fmt.Errorf("type %d: element type %d out of range", i, t.elem)
		}
	}
	return nil
}

// pallet returns the named pallet.
func (m *Metadata) pallet(name string) (*pallet, error) {
	p, ok := m.byName[name]
	if !ok {
		return nil, fmt.Errorf("pallet %s not in the runtime metadata", name)
	}
	return p, nil
}

// storage returns a storage entry of a pallet.
func (m *Metadata) storage(palletName, entry string) (*pallet, *storageEntry, error) {
	p, err := m.pallet(palletName)
	if err != nil {
		return nil, nil, err
	}
	e, ok := p.storage[entry]
	if !ok {
		return nil, nil, fmt.Errorf("storage %s.%s not in the runtime metadata", palletName, entry)
	}
	return p, e, nil
}

// call returns the call variant of pallet.call and the pallet index.
func (m *Metadata) call(palletName, call string) (uint8, *variant, error) {
	p, err := m.pallet(palletName)
	if err != nil {
		return 0, nil, err
	}
	if p.calls < 0 {
		return 0, nil, fmt.Errorf("pallet %s has no calls", palletName)
	}
	t := &m.types[p.calls]
	for i := range t.variants {
		if t.variants[i].name == call {
			return p.index, &t.variants[i], nil
		}
	}
	return 0, nil, fmt.Errorf("call %s.%s not in the runtime metadata", palletName, call)
}

// palletByIndex finds a pallet by its index.
func (m *Metadata) palletByIndex(i uint8) *pallet {
	for _, p := range m.pallets {
		if p.index == i {
			return p
		}
	}
	return nil
}

// variantByIndex finds the variant of an enum type by index.
func (m *Metadata) variantByIndex(typ int64, i uint8) *variant {
	if typ < 0 || typ >= int64(len(m.types)) {
		return nil
	}
	t := &m.types[typ]
	for j := range t.variants {
		if t.variants[j].index == i {
			return &t.variants[j]
		}
	}
	return nil
}
