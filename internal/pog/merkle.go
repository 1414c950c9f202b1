package pog

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
)

// Hash is a SHA-256 digest: a leaf, an inner node or a root.
type Hash [32]byte

// String returns the hash in lower-case hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// ParseHash parses 64 hex digits.
func ParseHash(s string) (Hash, error) {
	var out Hash
	if err := decodeHexFixed(out[:], s); err != nil {
		return Hash{}, fmt.Errorf("hash: %w", err)
	}
	return out, nil
}

// Domain tags, one 32-bit word ahead of the hashed data so a GPU hashes
// aligned words: leaf = SHA-256("npg\x00" ‖ 1 KiB chunk), node =
// SHA-256("npg\x01" ‖ left ‖ right).
var (
	leafTag = [4]byte{'n', 'p', 'g', 0}
	nodeTag = [4]byte{'n', 'p', 'g', 1}
)

// LeafHash hashes one chunk: 256 fp32 values of a row, little-endian.
func LeafHash(chunk []byte) Hash {
	h := sha256.New()
	h.Write(leafTag[:])
	h.Write(chunk)
	var out Hash
	h.Sum(out[:0])
	return out
}

// NodeHash hashes two children.
func NodeHash(left, right Hash) Hash {
	var buf [4 + 64]byte
	copy(buf[:4], nodeTag[:])
	copy(buf[4:], left[:])
	copy(buf[36:], right[:])
	return sha256.Sum256(buf[:])
}

// Leaves returns the number of Merkle leaves of an n×n C.
func Leaves(n int) int { return n * (n / ChunkValues) }

// ChunkIndex returns the leaf holding C[i][j].
func ChunkIndex(n, i, j int) int { return i*(n/ChunkValues) + j/ChunkValues }

// The tree over L leaves is built level by level: level 0 are the leaves;
// a level of m nodes has ⌈m/2⌉ parents, parent p = NodeHash(2p, 2p+1), and
// when m is odd the last node is carried up unchanged. The root is the one
// node of the top level. A proof lists the siblings from the leaf up,
// skipping the levels where the node was carried up.

// PathLen returns the number of siblings in a proof for leaf idx of L leaves.
func PathLen(leaves, idx int) int {
	n := 0
	for m := leaves; m > 1; m = (m + 1) / 2 {
		if idx^1 < m {
			n++
		}
		idx >>= 1
	}
	return n
}

// MaxPathLen bounds a proof's siblings: ⌈log2(Leaves(MaxN))⌉.
const MaxPathLen = 64

// BuildTree returns all levels of the tree over leaves, level 0 first; the
// last level holds the root. leaves must not be empty.
func BuildTree(leaves []Hash) [][]Hash {
	levels := [][]Hash{leaves}
	for cur := leaves; len(cur) > 1; {
		next := make([]Hash, (len(cur)+1)/2)
		for p := range next {
			if 2*p+1 < len(cur) {
				next[p] = NodeHash(cur[2*p], cur[2*p+1])
			} else {
				next[p] = cur[2*p]
			}
		}
		levels = append(levels, next)
		cur = next
	}
	return levels
}

// TreePath returns the siblings of leaf idx, from the leaf up.
func TreePath(levels [][]Hash, idx int) []Hash {
	var path []Hash
	for _, lvl := range levels[:len(levels)-1] {
		if idx^1 < len(lvl) {
			path = append(path, lvl[idx^1])
		}
		idx >>= 1
	}
	return path
}

// RootFromPath folds path from leaf hash h at position idx of L leaves; it
// fails if path has the wrong length for that position.
func RootFromPath(h Hash, leaves, idx int, path []Hash) (Hash, error) {
	if leaves < 1 || idx < 0 || idx >= leaves {
		return Hash{}, fmt.Errorf("leaf %d out of range [0, %d)", idx, leaves)
	}
	p := 0
	for m := leaves; m > 1; m = (m + 1) / 2 {
		if idx^1 < m {
			if p >= len(path) {
				return Hash{}, fmt.Errorf("merkle path has %d siblings, want %d", len(path), PathLen(leaves, idx))
			}
			if idx&1 == 0 {
				h = NodeHash(h, path[p])
			} else {
				h = NodeHash(path[p], h)
			}
			p++
		}
		idx >>= 1
	}
	if p != len(path) {
		return Hash{}, fmt.Errorf("merkle path has %d siblings, want %d", len(path), p)
	}
	return h, nil
}

// ChunkValue returns value k of a chunk (little-endian fp32).
func ChunkValue(chunk []byte, k int) float32 {
	return math.Float32frombits(binary.LittleEndian.Uint32(chunk[4*k:]))
}

// decodeHexFixed decodes exactly len(dst) bytes of lower- or upper-case hex.
func decodeHexFixed(dst []byte, s string) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("want %d hex digits, got %d characters", 2*len(dst), len(s))
	}
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		return errors.New("not hex")
	}
	return nil
}
