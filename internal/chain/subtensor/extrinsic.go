package subtensor

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"slices"

	"golang.org/x/crypto/blake2b"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
)

// Signed extrinsics, format version 4 (sp_runtime UncheckedExtrinsic):
//
//	compact(len) ++ 0x84 ++ address ++ signature ++ extra ++ call
//
// where 0x84 is "signed" (0x80) | version 4, address is MultiAddress::Id
// (0x00 ++ 32-byte account), signature is MultiSignature::Sr25519 (0x01 ++
// 64 bytes), and extra is each transaction extension's explicit value in
// metadata order. The signature covers call ++ extra ++ implicit (each
// extension's signed-only value), hashed with blake2b-256 first when longer
// than 256 bytes.

const extrinsicVersion = 4

// txParams are the chain values an extrinsic commits to.
type txParams struct {
	specVersion uint32
	txVersion   uint32
	genesis     []byte // 32-byte genesis hash
	eraPeriod   uint64 // power of two, 4..4096
	eraBlock    uint64 // the era starts at this block
	eraHash     []byte // hash of eraBlock
	nonce       uint64
}

// mortalEra encodes the mortal era of period blocks starting at block (the
// two-byte form of sp_runtime::generic::Era::Mortal). period must be a power
// of two from 4 to 4096, so the phase needs no quantization and the era is
// born exactly at block.
func mortalEra(period, block uint64) ([]byte, error) {
	if period < 4 || period > 4096 || period&(period-1) != 0 {
		return nil, fmt.Errorf("era period %d: want a power of two from 4 to 4096", period)
	}
	phase := block % period
	low := uint64(bits.TrailingZeros64(period) - 1) // log2(period) - 1, 1..11
	enc := low | phase<<4
	return []byte{byte(enc), byte(enc >> 8)}, nil
}

// encodeCall encodes pallet.call with its arguments given by name. The
// call's argument list must match args exactly, so a runtime that changed
// the call's signature is refused instead of being sent wrong bytes.
func (m *Metadata) encodeCall(palletName, call string, args map[string]any) ([]byte, error) {
	pi, v, err := m.call(palletName, call)
	if err != nil {
		return nil, err
	}
	out := []byte{pi, v.index}
	for _, f := range v.fields {
		a, ok := args[f.name]
		if !ok {
			return nil, fmt.Errorf("call %s.%s takes argument %q, unknown to this client", palletName, call, f.name)
		}
		if out, err = m.encodeValue(out, f.typ, a); err != nil {
			return nil, fmt.Errorf("call %s.%s argument %s: %w", palletName, call, f.name, err)
		}
	}
	if len(v.fields) != len(args) {
		return nil, fmt.Errorf("call %s.%s takes %d arguments, this client passes %d", palletName, call, len(v.fields), len(args))
	}
	return out, nil
}

// extensionData encodes each transaction extension's explicit and implicit
// values in metadata order. Extensions whose types carry no data need no
// knowledge; those that do are filled by identifier, and an unknown one
// with data is an error naming it.
func (m *Metadata) extensionData(p txParams) (extra, implicit []byte, err error) {
	for _, e := range m.extensions {
		ex, im, err := m.extension(e, p)
		if err != nil {
			return nil, nil, fmt.Errorf("transaction extension %s: %w", e.name, err)
		}
		extra, implicit = append(extra, ex...), append(implicit, im...)
	}
	return extra, implicit, nil
}

func (m *Metadata) extension(e extension, p txParams) (ex, im []byte, err error) {
	implicit := map[string]any{
		"CheckSpecVersion": uint64(p.specVersion), "CheckTxVersion": uint64(p.txVersion),
		"CheckGenesis": p.genesis, "CheckMortality": p.eraHash, "CheckEra": p.eraHash,
	}
	if v, ok := implicit[e.name]; ok {
		im, err = m.encodeValue(nil, e.additional, v)
	} else {
		im, err = m.emptyValue(e.additional) // CheckMetadataHash: None
	}
	if err != nil {
		return nil, nil, err
	}
	switch e.name {
	case "CheckMortality", "CheckEra":
		ex, err = m.eraValue(e.typ, p)
	case "CheckNonce":
		ex, err = m.encodeValue(nil, e.typ, p.nonce)
	case "ChargeTransactionPayment", "ChargeTransactionPaymentWrapper", "ChargeAssetTxPayment":
		ex, err = m.zeroValue(e.typ, true) // no tip
	case "CheckMetadataHash":
		ex, err = m.metadataHashMode(e.typ)
	default:
		ex, err = m.emptyValue(e.typ)
	}
	return ex, im, err
}

// emptyValue encodes a type that carries nothing: an empty struct or tuple
// (PhantomData), or an Option left as None.
func (m *Metadata) emptyValue(id uint32) ([]byte, error) { return m.zeroValue(id, false) }

// zeroValue encodes the zero value of a type. Without numbers only
// data-free types and None are allowed.
func (m *Metadata) zeroValue(id uint32, numbers bool) ([]byte, error) {
	steps := 0
	return m.zeroAt(id, numbers, 0, &steps)
}

func (m *Metadata) zeroAt(id uint32, numbers bool, depth int, steps *int) ([]byte, error) {
	if *steps++; depth > maxDepth || *steps > 4096 {
		return nil, errors.New("type nesting too deep")
	}
	t := &m.types[id]
	var out []byte
	switch t.kind {
	case kindComposite:
		for _, f := range t.fields {
			b, err := m.zeroAt(f.typ, numbers, depth+1, steps)
			if err != nil {
				return nil, err
			}
			out = append(out, b...)
		}
		return out, nil
	case kindTuple:
		for _, e := range t.tuple {
			b, err := m.zeroAt(e, numbers, depth+1, steps)
			if err != nil {
				return nil, err
			}
			out = append(out, b...)
		}
		return out, nil
	case kindVariant:
		if t.name() == "Option" && len(t.variants) == 2 && t.variants[0].name == "None" && t.variants[0].index == 0 {
			return []byte{0}, nil
		}
	case kindCompact:
		if numbers {
			return []byte{0}, nil
		}
	case kindPrimitive:
		if numbers && t.prim != primStr {
			return make([]byte, primSize[t.prim]), nil
		}
	}
	return nil, fmt.Errorf("carries a %s value this client cannot fill", describe(t))
}

func describe(t *typeDef) string {
	if n := t.name(); n != "" {
		return n
	}
	return [...]string{"struct", "enum", "sequence", "array", "tuple", "primitive", "compact", "bit sequence"}[t.kind]
}

// eraValue encodes the mortal era into CheckMortality's type, a struct
// around sp_runtime's Era enum.
func (m *Metadata) eraValue(id uint32, p txParams) ([]byte, error) {
	t := &m.types[id]
	for range maxDepth {
		if t.kind != kindComposite {
			break
		}
		var inner []field
		for _, f := range t.fields {
			if b, err := m.emptyValue(f.typ); err != nil || len(b) != 0 {
				inner = append(inner, f)
			}
		}
		if len(inner) != 1 {
			return nil, errors.New("unexpected era type")
		}
		t = &m.types[inner[0].typ]
	}
	if t.kind != kindVariant || t.name() != "Era" {
		return nil, fmt.Errorf("want an Era, found %s", describe(t))
	}
	return mortalEra(p.eraPeriod, p.eraBlock)
}

// metadataHashMode encodes CheckMetadataHash's mode as Disabled: the
// signature then commits to no metadata hash (implicit None).
func (m *Metadata) metadataHashMode(id uint32) ([]byte, error) {
	t := &m.types[id]
	for i := 0; i < maxDepth && t.kind == kindComposite && len(t.fields) == 1; i++ {
		t = &m.types[t.fields[0].typ]
	}
	if t.kind == kindVariant {
		for _, v := range t.variants {
			if v.name == "Disabled" && len(v.fields) == 0 {
				return []byte{v.index}, nil
			}
		}
	}
	return nil, errors.New("mode has no Disabled variant")
}

// addressPrefix returns the MultiAddress::Id tag, or nothing when the
// runtime's address is a bare account id.
func (m *Metadata) addressPrefix() ([]byte, error) {
	if m.addrType < 0 {
		return []byte{0}, nil // V14 gives no address type; subtensor uses MultiAddress
	}
	t := &m.types[m.addrType]
	switch t.kind {
	case kindVariant:
		for _, v := range t.variants {
			if v.name == "Id" {
				return []byte{v.index}, nil
			}
		}
	case kindComposite:
		return nil, nil
	}
	return nil, fmt.Errorf("unsupported extrinsic address type %s", describe(t))
}

// signaturePrefix returns the MultiSignature::Sr25519 tag.
func (m *Metadata) signaturePrefix() ([]byte, error) {
	if m.sigType < 0 {
		return []byte{1}, nil
	}
	t := &m.types[m.sigType]
	switch t.kind {
	case kindVariant:
		for _, v := range t.variants {
			if v.name == "Sr25519" {
				return []byte{v.index}, nil
			}
		}
	case kindComposite:
		return nil, nil
	}
	return nil, fmt.Errorf("unsupported extrinsic signature type %s", describe(t))
}

// signingPayload is what the signer signs.
func signingPayload(call, extra, implicit []byte) []byte {
	payload := slices.Concat(call, extra, implicit)
	if len(payload) > 256 {
		h := blake2b.Sum256(payload)
		return h[:]
	}
	return payload
}

// signExtrinsic builds a signed extrinsic of call.
func (m *Metadata) signExtrinsic(call []byte, p txParams, signer subnet.Signer) ([]byte, error) {
	if len(p.genesis) != 32 || len(p.eraHash) != 32 {
		return nil, errors.New("sign extrinsic: genesis and era hashes must be 32 bytes")
	}
	pub := signer.PublicKey()
	if len(pub) != keys.PublicKeyLen {
		return nil, fmt.Errorf("sign extrinsic: public key of %d bytes", len(pub))
	}
	extra, implicit, err := m.extensionData(p)
	if err != nil {
		return nil, err
	}
	addr, err := m.addressPrefix()
	if err != nil {
		return nil, err
	}
	sigTag, err := m.signaturePrefix()
	if err != nil {
		return nil, err
	}
	sig, err := signer.Sign(signingPayload(call, extra, implicit))
	if err != nil {
		return nil, fmt.Errorf("sign extrinsic: %w", err)
	}
	if len(sig) != keys.SignatureLen {
		return nil, fmt.Errorf("sign extrinsic: signature of %d bytes", len(sig))
	}
	var body bytes.Buffer
	body.WriteByte(0x80 | extrinsicVersion)
	body.Write(addr)
	body.Write(pub)
	body.Write(sigTag)
	body.Write(sig)
	body.Write(extra)
	body.Write(call)
	return append(appendCompact(nil, uint64(body.Len())), body.Bytes()...), nil
}
