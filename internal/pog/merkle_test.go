package pog

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
)

func testLeaves(n int) []Hash {
	out := make([]Hash, n)
	for i := range out {
		out[i] = sha256.Sum256([]byte(fmt.Sprint(i)))
	}
	return out
}

func TestMerklePathsEveryShape(t *testing.T) {
	for leaves := 1; leaves <= 40; leaves++ {
		levels := BuildTree(testLeaves(leaves))
		root := levels[len(levels)-1][0]
		if len(levels[len(levels)-1]) != 1 {
			t.Fatalf("%d leaves: top level has %d nodes", leaves, len(levels[len(levels)-1]))
		}
		for idx := 0; idx < leaves; idx++ {
			path := TreePath(levels, idx)
			if len(path) != PathLen(leaves, idx) {
				t.Fatalf("%d leaves, leaf %d: path of %d, PathLen %d", leaves, idx, len(path), PathLen(leaves, idx))
			}
			got, err := RootFromPath(levels[0][idx], leaves, idx, path)
			if err != nil || got != root {
				t.Fatalf("%d leaves, leaf %d: root %v, %v", leaves, idx, got, err)
			}
			// Any wrong position, sibling or length must fail.
			if idx+1 < leaves && PathLen(leaves, idx+1) == len(path) {
				if got, err := RootFromPath(levels[0][idx], leaves, idx+1, path); err == nil && got == root {
					t.Fatalf("%d leaves: leaf %d verified at position %d", leaves, idx, idx+1)
				}
			}
			if len(path) > 0 {
				bad := append([]Hash(nil), path...)
				bad[len(bad)-1][0] ^= 1
				if got, _ := RootFromPath(levels[0][idx], leaves, idx, bad); got == root {
					t.Fatalf("%d leaves, leaf %d: flipped sibling verified", leaves, idx)
				}
				if _, err := RootFromPath(levels[0][idx], leaves, idx, path[:len(path)-1]); err == nil {
					t.Fatalf("%d leaves, leaf %d: short path accepted", leaves, idx)
				}
			}
			if _, err := RootFromPath(levels[0][idx], leaves, idx, append(path, Hash{})); err == nil {
				t.Fatalf("%d leaves, leaf %d: long path accepted", leaves, idx)
			}
		}
	}
}

// The hashes are fixed by the protocol; the CUDA kernels must produce the
// same bytes.
func TestHashVectors(t *testing.T) {
	var chunk Chunk
	for i := range chunk {
		chunk[i] = byte(i)
	}
	leaf := LeafHash(chunk[:])
	want := sha256.Sum256(append([]byte("npg\x00"), chunk[:]...))
	if leaf != want {
		t.Errorf("LeafHash = %x, want SHA-256(\"npg\\0\" ‖ chunk) = %x", leaf, want)
	}
	node := NodeHash(leaf, want)
	if node != sha256.Sum256(append(append([]byte("npg\x01"), leaf[:]...), want[:]...)) {
		t.Errorf("NodeHash is not SHA-256(\"npg\\1\" ‖ left ‖ right)")
	}
	if LeafHash(chunk[:]) == NodeHash(Hash{}, Hash{}) {
		t.Errorf("leaf and node hashes collide")
	}
	t.Logf("leaf of bytes 0..255 repeated: %s", hex.EncodeToString(leaf[:]))
}

func TestChunkLayout(t *testing.T) {
	const n = 512
	for _, c := range []Cell{{0, 0}, {0, 255}, {0, 256}, {1, 0}, {511, 511}} {
		idx := ChunkIndex(n, c.I, c.J)
		if want := (c.I*n + c.J) / ChunkValues; idx != want {
			t.Errorf("ChunkIndex(%v) = %d, want %d", c, idx, want)
		}
	}
	if Leaves(n) != n*n/ChunkValues {
		t.Errorf("Leaves(%d) = %d", n, Leaves(n))
	}
	if PathLen(Leaves(MaxN), Leaves(MaxN)-1) > MaxPathLen {
		t.Errorf("MaxPathLen %d too small for MaxN", MaxPathLen)
	}
}
