package pog

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
)

// NewSeeds returns g fresh seeds from crypto/rand (or r when not nil).
func NewSeeds(r io.Reader, g int) ([]Seed, error) {
	if r == nil {
		r = rand.Reader
	}
	out := make([]Seed, g)
	for i := range out {
		if _, err := io.ReadFull(r, out[i][:]); err != nil {
			return nil, fmt.Errorf("read seed: %w", err)
		}
	}
	return out, nil
}

// ChooseCells returns k cells of an n×n matrix in k distinct rows, rows and
// columns uniform, from crypto/rand (or r when not nil). k must be in
// [1, min(n, MaxChallenges)].
func ChooseCells(r io.Reader, n, k int) ([]Cell, error) {
	if r == nil {
		r = rand.Reader
	}
	if k < 1 || k > n || k > MaxChallenges {
		return nil, fmt.Errorf("choose %d cells of %d rows: want 1 to min(n, %d)", k, n, MaxChallenges)
	}
	rows := make(map[int]bool, k)
	cells := make([]Cell, 0, k)
	for tries := 0; len(cells) < k; tries++ {
		if tries > 100*k+1000 { // a random source this skewed is broken
			return nil, fmt.Errorf("choose %d distinct rows of %d: random source repeats itself", k, n)
		}
		i, err := uniform(r, n)
		if err != nil {
			return nil, err
		}
		if rows[i] {
			continue
		}
		j, err := uniform(r, n)
		if err != nil {
			return nil, err
		}
		rows[i] = true
		cells = append(cells, Cell{I: i, J: j})
	}
	return cells, nil
}

// uniform returns an integer in [0, n) without modulo bias.
func uniform(r io.Reader, n int) (int, error) {
	limit := ^uint64(0) - ^uint64(0)%uint64(n)
	var b [8]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, fmt.Errorf("read random: %w", err)
		}
		if v := binary.LittleEndian.Uint64(b[:]); v < limit {
			return int(v % uint64(n)), nil
		}
	}
}
