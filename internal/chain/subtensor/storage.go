package subtensor

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/centrifuge/go-substrate-rpc-client/v4/xxhash"
	"golang.org/x/crypto/blake2b"
)

// Storage keys are twox128(pallet prefix) ++ twox128(entry name) ++ one
// hashed key per map level, each hasher and key type taken from metadata.

func twox128(b []byte) []byte { return xxhash.New128(b).Sum(nil) }

// hashKey applies a storage hasher to an encoded key.
func hashKey(h storageHasher, k []byte) ([]byte, error) {
	switch h {
	case hashIdentity:
		return k, nil
	case hashTwox128:
		return xxhash.New128(k).Sum(nil), nil
	case hashTwox256:
		return xxhash.New256(k).Sum(nil), nil
	case hashTwox64Concat:
		return xxhash.New64Concat(k).Sum(nil), nil
	case hashBlake2_128, hashBlake2_128Concat:
		d, _ := blake2b.New(16, nil) // unkeyed: cannot fail
		d.Write(k)
		sum := d.Sum(nil)
		if h == hashBlake2_128Concat {
			sum = append(sum, k...)
		}
		return sum, nil
	case hashBlake2_256:
		sum := blake2b.Sum256(k)
		return sum[:], nil
	}
	return nil, fmt.Errorf("unknown storage hasher %d", h)
}

// storageKey builds the key of pallet.entry for the given map keys; fewer
// keys than map levels give a prefix for iteration.
func (m *Metadata) storageKey(palletName, entry string, keys ...any) ([]byte, *storageEntry, error) {
	p, e, err := m.storage(palletName, entry)
	if err != nil {
		return nil, nil, err
	}
	if len(keys) > len(e.hashers) {
		return nil, nil, fmt.Errorf("storage %s.%s takes %d keys, got %d", palletName, entry, len(e.hashers), len(keys))
	}
	out := append(twox128([]byte(p.storagePrefix)), twox128([]byte(e.name))...)
	for i, k := range keys {
		enc, err := m.encodeValue(nil, e.keys[i], k)
		if err != nil {
			return nil, nil, fmt.Errorf("storage %s.%s key %d: %w", palletName, entry, i, err)
		}
		h, err := hashKey(e.hashers[i], enc)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, h...)
	}
	return out, e, nil
}

func hexBytes(b []byte) string { return "0x" + hex.EncodeToString(b) }

// parseHex decodes a 0x-prefixed hex string.
func parseHex(s string) ([]byte, error) {
	if !strings.HasPrefix(s, "0x") {
		return nil, errors.New("hex string without 0x prefix")
	}
	return hex.DecodeString(s[2:])
}

// hexResult decodes a JSON result that is a hex string or null (nil, false).
func hexResult(raw json.RawMessage) ([]byte, bool, error) {
	var s *string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, false, fmt.Errorf("want a hex string: %w", err)
	}
	if s == nil {
		return nil, false, nil
	}
	b, err := parseHex(*s)
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}

// atParams appends the block hash to params when one is given.
func atParams(at string, params ...any) []any {
	if at != "" {
		params = append(params, at)
	}
	return params
}

// readStorage reads and decodes pallet.entry[keys] at block at ("" for the
// best block). found is false for an absent optional value; absent values
// with a default decode the default.
func (c *Client) readStorage(ctx context.Context, m *Metadata, at, palletName, entry string, keys ...any) (v any, found bool, err error) {
	key, e, err := m.storageKey(palletName, entry, keys...)
	if err != nil {
		return nil, false, err
	}
	raw, err := c.rpc.call(ctx, "state_getStorageAt", atParams(at, hexBytes(key))...)
	if err != nil {
		return nil, false, err
	}
	b, ok, err := hexResult(raw)
	if err != nil {
		return nil, false, fmt.Errorf("state_getStorageAt %s.%s: %w", palletName, entry, err)
	}
	return decodeStored(m, e, b, ok, palletName)
}

func decodeStored(m *Metadata, e *storageEntry, b []byte, ok bool, palletName string) (any, bool, error) {
	if !ok {
		if e.optional {
			return nil, false, nil
		}
		b = e.def
	}
	v, err := m.decodeAll(b, e.value)
	if err != nil {
		return nil, false, fmt.Errorf("decode storage %s.%s: %w", palletName, e.name, err)
	}
	return v, true, nil
}

// storageItem names one value for readMany.
type storageItem struct {
	pallet, entry string
	keys          []any
}

// readMany reads several values in one state_queryStorageAt round trip.
func (c *Client) readMany(ctx context.Context, m *Metadata, at string, items []storageItem) ([]any, error) {
	keys := make([]string, len(items))
	entries := make([]*storageEntry, len(items))
	for i, it := range items {
		k, e, err := m.storageKey(it.pallet, it.entry, it.keys...)
		if err != nil {
			return nil, err
		}
		keys[i], entries[i] = hexBytes(k), e
	}
	values, err := c.queryStorage(ctx, keys, at)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(items))
	for i, it := range items {
		b, ok := values[keys[i]]
		v, found, err := decodeStored(m, entries[i], b, ok && b != nil, it.pallet)
		if err != nil {
			return nil, err
		}
		if found {
			out[i] = v
		}
	}
	return out, nil
}

// queryStorage runs state_queryStorageAt and returns the values by key
// (nil for absent values).
func (c *Client) queryStorage(ctx context.Context, keys []string, at string) (map[string][]byte, error) {
	raw, err := c.rpc.call(ctx, "state_queryStorageAt", atParams(at, keys)...)
	if err != nil {
		return nil, err
	}
	var sets []struct {
		Changes [][2]*string `json:"changes"`
	}
	if err := json.Unmarshal(raw, &sets); err != nil {
		return nil, fmt.Errorf("state_queryStorageAt: invalid result: %w", err)
	}
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	out := make(map[string][]byte, len(keys))
	for _, set := range sets {
		for _, ch := range set.Changes {
			if ch[0] == nil || !want[strings.ToLower(*ch[0])] {
				return nil, errors.New("state_queryStorageAt: answer for a key that was not asked")
			}
			if ch[1] == nil {
				out[strings.ToLower(*ch[0])] = nil
				continue
			}
			b, err := parseHex(*ch[1])
			if err != nil {
				return nil, fmt.Errorf("state_queryStorageAt: %w", err)
			}
			out[strings.ToLower(*ch[0])] = b
		}
	}
	return out, nil
}

// keysPaged lists storage keys under prefix, one page after startKey.
func (c *Client) keysPaged(ctx context.Context, prefix, startKey string, count int, at string) ([]string, error) {
	raw, err := c.rpc.call(ctx, "state_getKeysPaged", atParams(at, prefix, count, startKey)...)
	if err != nil {
		return nil, err
	}
	var keys []string
	if err := json.Unmarshal(raw, &keys); err != nil {
		return nil, fmt.Errorf("state_getKeysPaged: invalid result: %w", err)
	}
	for i, k := range keys {
		k = strings.ToLower(k)
		if !strings.HasPrefix(k, prefix) || len(k) <= len(prefix) || k <= startKey {
			return nil, fmt.Errorf("state_getKeysPaged: key %d is outside the requested range", i)
		}
		keys[i] = k
	}
	return keys, nil
}
