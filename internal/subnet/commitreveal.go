package subnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// CommitRevealVersion is the commit-reveal version this code implements:
// timelocked commits revealed by the chain (subtensor's
// CommitRevealWeightsVersion 4).
const CommitRevealVersion = 4

// MaxUnrevealedCommits is how many unrevealed commits a hotkey may have in
// one epoch of a subnet (subtensor's limit).
const MaxUnrevealedCommits = 10

// Beacon is the public part of the randomness beacon a chain decrypts
// commits with: drand quicknet on Bittensor, the embedded chain's own
// beacon in devnet. Round r is published at Genesis + (r-1)·Period.
type Beacon struct {
	PublicKey []byte // BLS12-381 G2, compressed (96 bytes)
	Genesis   time.Time
	Period    time.Duration
}

// EpochSchedule is a subnet's epoch state on chains that count epochs
// (subtensor's SubnetEpochIndex model, the embedded chain): an epoch runs
// at a block when PendingEpochAt is due or Tempo blocks have passed since
// LastEpochBlock.
type EpochSchedule struct {
	LastEpochBlock      uint64
	PendingEpochAt      uint64
	EpochIndex          uint64
	BlocksSinceLastStep uint64
}

// CommitReveal is what a validator reads to choose how to submit weights
// and, with commit-reveal on, to compute a commit's reveal round.
type CommitReveal struct {
	NetUID             NetUID
	Enabled            bool
	RevealPeriodEpochs uint64
	// Version is the commit-reveal version the chain requires.
	Version uint16
	Tempo   uint16
	// Block is the best block; BlockTime the expected time between blocks.
	Block     uint64
	BlockTime time.Duration
	// Schedule is nil on runtimes that place epochs by block number alone
	// ((block + netuid + 1) / (tempo + 1)).
	Schedule *EpochSchedule
	Beacon   Beacon
}

// WeightsPayload is what a timelocked commit encrypts: subtensor's SCALE
// WeightsTlockPayload { hotkey: Vec<u8>, uids: Vec<u16>, values: Vec<u16>,
// version_key: u64 }, hotkey being the committer's 32-byte public key.
type WeightsPayload struct {
	Hotkey     []byte
	UIDs       []UID
	Values     []uint16
	VersionKey uint64
}

// Encode returns the SCALE encoding.
func (p WeightsPayload) Encode() []byte {
	b := make([]byte, 0, 5+len(p.Hotkey)+10+4*len(p.UIDs)+8)
	b = appendCompact(b, uint64(len(p.Hotkey)))
	b = append(b, p.Hotkey...)
	b = appendCompact(b, uint64(len(p.UIDs)))
	for _, u := range p.UIDs {
		b = binary.LittleEndian.AppendUint16(b, uint16(u))
	}
	b = appendCompact(b, uint64(len(p.Values)))
	for _, v := range p.Values {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	return binary.LittleEndian.AppendUint64(b, p.VersionKey)
}

// DecodeWeightsPayload decodes a payload strictly: every length within the
// bytes present, no trailing bytes. Subtensor also accepts a legacy payload
// without the hotkey; this decoder does not.
func DecodeWeightsPayload(b []byte) (WeightsPayload, error) {
	var p WeightsPayload
	d := &scaleReader{b: b}
	p.Hotkey = d.take(d.compact(1), 1)
	n := d.compact(2)
	raw := d.take(n, 2)
	p.UIDs = make([]UID, 0, len(raw)/2)
	for i := 0; i+1 < len(raw); i += 2 {
		p.UIDs = append(p.UIDs, UID(binary.LittleEndian.Uint16(raw[i:])))
	}
	raw = d.take(d.compact(2), 2)
	p.Values = make([]uint16, 0, len(raw)/2)
	for i := 0; i+1 < len(raw); i += 2 {
		p.Values = append(p.Values, binary.LittleEndian.Uint16(raw[i:]))
	}
	if v := d.take(1, 8); v != nil {
		p.VersionKey = binary.LittleEndian.Uint64(v)
	}
	switch {
	case d.err != nil:
		return WeightsPayload{}, fmt.Errorf("weights payload: %w", d.err)
	case len(d.b) != 0:
		return WeightsPayload{}, fmt.Errorf("weights payload: %d trailing bytes", len(d.b))
	}
	return p, nil
}

// appendCompact appends SCALE's compact encoding of n.
func appendCompact(b []byte, n uint64) []byte {
	switch {
	case n < 1<<6:
		return append(b, byte(n<<2))
	case n < 1<<14:
		return binary.LittleEndian.AppendUint16(b, uint16(n<<2|1))
	case n < 1<<30:
		return binary.LittleEndian.AppendUint32(b, uint32(n<<2|2))
	}
	var tmp [8]byte
	binary.LittleEndian.PutUint64(tmp[:], n)
	l := 8
	for l > 4 && tmp[l-1] == 0 {
		l--
	}
	b = append(b, byte((l-4)<<2|3))
	return append(b, tmp[:l]...)
}

// scaleReader reads SCALE values; the first error sticks.
type scaleReader struct {
	b   []byte
	err error
}

// take returns n elements of size bytes each.
func (d *scaleReader) take(n uint64, size uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b))/size {
		d.err = fmt.Errorf("%d elements of %d bytes announced, %d bytes left", n, size, len(d.b))
		return nil
	}
	v := d.b[:n*size]
	d.b = d.b[n*size:]
	return v
}

// compact reads a compact length; elemSize bounds it by the bytes left.
func (d *scaleReader) compact(elemSize uint64) uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errors.New("missing length")
		return 0
	}
	var n uint64
	switch d.b[0] & 3 {
	case 0:
		n, d.b = uint64(d.b[0]>>2), d.b[1:]
	case 1:
		if len(d.b) < 2 {
			d.err = errors.New("truncated length")
			return 0
		}
		n, d.b = uint64(binary.LittleEndian.Uint16(d.b)>>2), d.b[2:]
	case 2:
		if len(d.b) < 4 {
			d.err = errors.New("truncated length")
			return 0
		}
		n, d.b = uint64(binary.LittleEndian.Uint32(d.b)>>2), d.b[4:]
	default:
		l := int(d.b[0]>>2) + 4
		if l > 8 || len(d.b) < 1+l {
			d.err = errors.New("length out of range")
			return 0
		}
		var tmp [8]byte
		copy(tmp[:], d.b[1:1+l])
		n, d.b = binary.LittleEndian.Uint64(tmp[:]), d.b[1+l:]
	}
	if n > uint64(len(d.b))/elemSize {
		d.err = fmt.Errorf("length %d exceeds the %d bytes left", n, len(d.b))
		return 0
	}
	return n
}
