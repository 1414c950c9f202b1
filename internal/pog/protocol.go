package pog

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode"
)

// The session protocol: one line-delimited JSON object per message over the
// stdin/stdout of a single `pog compute` process (an SSH exec session), so C
// stays in GPU memory between commitment and proof.
//
//	worker    → validator  {"type":"hello", "version":1, "backend":…, "simulated":…, "gpus":[…]}
//	validator → worker     {"type":"compute", "n":N, "seeds":["32 hex",…]}
//	worker    → validator  {"type":"commit", "gpus":[{"n":N, "root":"64 hex", "timings":{…}},…]}
//	validator → worker     {"type":"challenge", "gpus":[[{"i":…,"j":…},…],…]}
//	worker    → validator  {"type":"proofs", "gpus":[{"proofs":[{"i","j","chunk","path"},…]},…]}
//
// The worker then waits for another compute request or end of input. It may
// answer any request with {"type":"error","message":…} instead. A GPU that
// failed alone carries "error" in its commit or proofs entry.
//
// Decoding is strict: unknown fields, trailing data, oversized lines, counts
// and sizes out of range and malformed hex are errors wrapping ErrProtocol.

// Message types.
const (
	TypeHello     = "hello"
	TypeCompute   = "compute"
	TypeCommit    = "commit"
	TypeChallenge = "challenge"
	TypeProofs    = "proofs"
	TypeError     = "error"
)

// Line limits per message type, in bytes without the newline. The proofs
// line's limit depends on the challenge: ProofsLineLimit.
const (
	MaxHelloLine     = 64 << 10
	MaxComputeLine   = 4 << 10
	MaxCommitLine    = 64 << 10
	MaxChallengeLine = 256 << 10
	maxErrorMessage  = 1024
	maxNameLen       = 256
	maxUUIDLen       = 128
	maxBackendLen    = 32
	maxTimingMS      = 1e9
)

// ErrProtocol marks a message that breaks the protocol: garbage, an
// oversized line, a wrong count or size, malformed hex. A validator treats
// it as a failed proof.
var ErrProtocol = errors.New("pog protocol violation")

// ErrNoHello is a worker that did not send its complete hello in time.
var ErrNoHello = errors.New("no complete hello from the worker")

// WorkerError is an error message the worker sent.
type WorkerError struct{ Message string }

func (e *WorkerError) Error() string { return "worker error: " + e.Message }

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// Info describes the worker's devices. Everything in it is a claim.
type Info struct {
	Version   int       `json:"version"`
	Backend   string    `json:"backend"`
	Simulated bool      `json:"simulated"`
	GPUs      []GPUInfo `json:"gpus"`
}

// GPUInfo is one device as the worker reports it.
type GPUInfo struct {
	Index       int    `json:"index"`
	Name        string `json:"name"`
	MemoryBytes uint64 `json:"memory_bytes"`
	UUID        string `json:"uuid,omitempty"`
}

// Hello is the worker's first message.
type Hello struct {
	Type string `json:"type"`
	Info
}

// ComputeRequest asks for C = A·Bᵀ on the first len(Seeds) GPUs, GPU g
// with Seeds[g].
type ComputeRequest struct {
	Type  string `json:"type"`
	N     int    `json:"n"`
	Seeds []Seed `json:"seeds"`
	// SimTimeScale, when set, is the devnet speed factor a simulated worker
	// applies; real backends ignore it.
	SimTimeScale float64 `json:"sim_time_scale,omitempty"`
}

// ComputeResponse carries one commitment per requested GPU.
type ComputeResponse struct {
	Type string       `json:"type"`
	GPUs []Commitment `json:"gpus"`
}

// Commitment is one GPU's Merkle root over C.
type Commitment struct {
	// N is the size computed: the requested n, or SimN for a simulated GPU.
	N    int  `json:"n"`
	Root Hash `json:"root"`
	// Timings are the worker's own phase times, informational only.
	Timings Timings `json:"timings"`
	// Error, when set, says this GPU failed; N and Root are then void.
	Error string `json:"error,omitempty"`
}

// Timings are a worker's phase times in milliseconds.
type Timings struct {
	GenerateMS float64 `json:"generate_ms"`
	MultiplyMS float64 `json:"multiply_ms"`
	HashMS     float64 `json:"hash_ms"`
	TreeMS     float64 `json:"tree_ms"`
}

// Cell is one element C[I][J].
type Cell struct {
	I int `json:"i"`
	J int `json:"j"`
}

// ChallengeRequest lists the cells to prove, per GPU of the commitment.
type ChallengeRequest struct {
	Type string   `json:"type"`
	GPUs [][]Cell `json:"gpus"`
}

// ProofsResponse answers a challenge, one entry per GPU.
type ProofsResponse struct {
	Type string      `json:"type"`
	GPUs []GPUProofs `json:"gpus"`
}

// GPUProofs are one GPU's proofs, in challenge order.
type GPUProofs struct {
	Proofs []Proof `json:"proofs"`
	Error  string  `json:"error,omitempty"`
}

// Proof opens the chunk holding C[I][J]: its 256 values and the Merkle path
// from its leaf to the root.
type Proof struct {
	I     int    `json:"i"`
	J     int    `json:"j"`
	Chunk Chunk  `json:"chunk"`
	Path  []Hash `json:"path"`
}

// Chunk is one Merkle leaf's data: 256 fp32 values, little-endian.
type Chunk [ChunkBytes]byte

// ErrorMessage is a worker's refusal of a request.
type ErrorMessage struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// MarshalText encodes the seed as hex.
func (s Seed) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes exactly 32 hex digits.
func (s *Seed) UnmarshalText(b []byte) error {
	v, err := ParseSeed(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText encodes the hash as hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes exactly 64 hex digits.
func (h *Hash) UnmarshalText(b []byte) error {
	v, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// MarshalText encodes the chunk as hex.
func (c *Chunk) MarshalText() ([]byte, error) {
	out := make([]byte, 2*ChunkBytes)
	hex.Encode(out, c[:])
	return out, nil
}

// UnmarshalText decodes exactly 2048 hex digits.
func (c *Chunk) UnmarshalText(b []byte) error {
	if err := decodeHexFixed(c[:], string(b)); err != nil {
		return fmt.Errorf("chunk: %w", err)
	}
	return nil
}

// decodeStrict decodes one JSON object of type typ from line into v,
// refusing unknown fields and trailing data. A worker's error message
// decodes into a *WorkerError.
func decodeStrict(line []byte, limit int, typ string, v any) error {
	if len(line) > limit {
		return protoErr("%s message of %d bytes exceeds %d", typ, len(line), limit)
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(line, &head); err != nil {
		return protoErr("%s message: %v", typ, err)
	}
	if head.Type == TypeError && typ != TypeError {
		var m ErrorMessage
		if err := decodeStrict(line, limit, TypeError, &m); err != nil {
			return err
		}
		return &WorkerError{Message: sanitize(m.Message, maxErrorMessage)}
	}
	if head.Type != typ {
		return protoErr("want a %s message, got type %q", typ, sanitize(head.Type, 32))
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return protoErr("%s message: %v", typ, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return protoErr("%s message: trailing data", typ)
	}
	return nil
}

// sanitize bounds s and replaces non-printable runes, for messages from the
// other side that end up in logs.
func sanitize(s string, limit int) string {
	if len(s) > limit {
		s = s[:limit]
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, strings.ToValidUTF8(s, "?"))
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// DecodeHello decodes and checks the worker's hello.
func DecodeHello(line []byte) (Info, error) {
	var h Hello
	if err := decodeStrict(line, MaxHelloLine, TypeHello, &h); err != nil {
		return Info{}, err
	}
	if err := h.Info.Validate(); err != nil {
		return Info{}, err
	}
	return h.Info, nil
}

// Validate checks an Info's bounds.
func (in Info) Validate() error {
	if in.Version != ProtocolVersion {
		return protoErr("protocol version %d, want %d", in.Version, ProtocolVersion)
	}
	if len(in.Backend) == 0 || len(in.Backend) > maxBackendLen || !printable(in.Backend) {
		return protoErr("backend name missing, too long or not printable")
	}
	if len(in.GPUs) > MaxReportedGPUs {
		return protoErr("%d GPUs reported, at most %d", len(in.GPUs), MaxReportedGPUs)
	}
	for i, g := range in.GPUs {
		if g.Index != i {
			return protoErr("GPU %d has index %d", i, g.Index)
		}
		if g.Name == "" || len(g.Name) > maxNameLen || !printable(g.Name) {
			return protoErr("GPU %d: name missing, longer than %d bytes or not printable", i, maxNameLen)
		}
		if len(g.UUID) > maxUUIDLen || !printable(g.UUID) {
			return protoErr("GPU %d: uuid longer than %d bytes or not printable", i, maxUUIDLen)
		}
	}
	return nil
}

// DecodeComputeRequest decodes and checks a compute request.
func DecodeComputeRequest(line []byte) (ComputeRequest, error) {
	var r ComputeRequest
	if err := decodeStrict(line, MaxComputeLine, TypeCompute, &r); err != nil {
		return ComputeRequest{}, err
	}
	if err := r.Validate(); err != nil {
		return ComputeRequest{}, err
	}
	return r, nil
}

// Validate checks a compute request's bounds.
func (r ComputeRequest) Validate() error {
	if !validN(r.N) {
		return protoErr("n = %d: want a multiple of %d in [%d, %d]", r.N, ChunkValues, MinN, MaxN)
	}
	if len(r.Seeds) < 1 || len(r.Seeds) > MaxGPUs {
		return protoErr("%d seeds: want 1 to %d", len(r.Seeds), MaxGPUs)
	}
	if r.SimTimeScale < 0 || r.SimTimeScale > 1 || math.IsNaN(r.SimTimeScale) {
		return protoErr("sim_time_scale %v outside [0, 1]", r.SimTimeScale)
	}
	return nil
}

// DecodeComputeResponse decodes the commitments answering req: one per
// seed, each for a legal n no larger than req.N (smaller only for a
// simulated GPU; the validator decides whether to accept that).
func DecodeComputeResponse(line []byte, req ComputeRequest) (ComputeResponse, error) {
	var r ComputeResponse
	if err := decodeStrict(line, MaxCommitLine, TypeCommit, &r); err != nil {
		return ComputeResponse{}, err
	}
	if len(r.GPUs) != len(req.Seeds) {
		return ComputeResponse{}, protoErr("%d commitments for %d GPUs", len(r.GPUs), len(req.Seeds))
	}
	for g, c := range r.GPUs {
		if c.Error != "" {
			if len(c.Error) > maxErrorMessage {
				return ComputeResponse{}, protoErr("GPU %d: error message longer than %d bytes", g, maxErrorMessage)
			}
			continue
		}
		if !validN(c.N) || c.N > req.N {
			return ComputeResponse{}, protoErr("GPU %d: committed n = %d for requested %d", g, c.N, req.N)
		}
		if err := c.Timings.validate(); err != nil {
			return ComputeResponse{}, protoErr("GPU %d: %v", g, err)
		}
	}
	return r, nil
}

func (t Timings) validate() error {
	for _, v := range []float64{t.GenerateMS, t.MultiplyMS, t.HashMS, t.TreeMS} {
		if !(v >= 0 && v <= maxTimingMS) {
			return fmt.Errorf("timing %v ms outside [0, %g]", v, float64(maxTimingMS))
		}
	}
	return nil
}

// DecodeChallenge decodes a challenge for GPUs that committed sizes ns:
// one list per GPU, 1 to MaxChallenges cells each, inside the matrix.
func DecodeChallenge(line []byte, ns []int) (ChallengeRequest, error) {
	var r ChallengeRequest
	if err := decodeStrict(line, MaxChallengeLine, TypeChallenge, &r); err != nil {
		return ChallengeRequest{}, err
	}
	if len(r.GPUs) != len(ns) {
		return ChallengeRequest{}, protoErr("challenge for %d GPUs, %d committed", len(r.GPUs), len(ns))
	}
	for g, cells := range r.GPUs {
		if ns[g] == 0 { // a GPU that failed to commit: nothing to prove
			if len(cells) != 0 {
				return ChallengeRequest{}, protoErr("GPU %d: cells for a GPU that did not commit", g)
			}
			continue
		}
		if len(cells) < 1 || len(cells) > MaxChallenges {
			return ChallengeRequest{}, protoErr("GPU %d: %d cells, want 1 to %d", g, len(cells), MaxChallenges)
		}
		for _, c := range cells {
			if c.I < 0 || c.I >= ns[g] || c.J < 0 || c.J >= ns[g] {
				return ChallengeRequest{}, protoErr("GPU %d: cell (%d, %d) outside %d×%d", g, c.I, c.J, ns[g], ns[g])
			}
		}
	}
	return r, nil
}

// Sizes of a proofs line's parts as encoding/json writes them, with room
// for whitespace between tokens: a proof's fixed part (braces, keys, two
// indices up to MaxN, the quoted chunk), one path entry (a quoted hash and
// a comma), one GPU entry without its proofs (an error message JSON may
// escape to six bytes per byte), and the envelope.
const (
	proofFixedBytes  = 2*ChunkBytes + 160
	pathEntryBytes   = 2*len(Hash{}) + 8
	gpuEntryBytes    = 6*maxErrorMessage + 64
	proofsSlackBytes = 4 << 10
)

// ProofsLineLimit is the longest proofs line a worker may send for ch, the
// challenge of GPUs that committed sizes ns: per challenged cell the chunk
// in hex and the Merkle path of a tree of Leaves(n) leaves, plus each GPU's
// entry and some slack. Everything beyond is refused unread, so a session
// holds at most about what an honest answer needs (about 2 MiB for 8 GPUs
// of 80 GB at DefaultChallenges) rather than a fixed worst case.
func ProofsLineLimit(ch ChallengeRequest, ns []int) int {
	total := proofsSlackBytes
	for g, cells := range ch.GPUs {
		depth := MaxPathLen
		if g < len(ns) && ns[g] > 0 {
			depth = treeDepth(Leaves(ns[g]))
		}
		total += gpuEntryBytes + len(cells)*(proofFixedBytes+depth*pathEntryBytes)
	}
	return total
}

// treeDepth is the longest Merkle path over leaves leaves: ⌈log2 leaves⌉.
func treeDepth(leaves int) int {
	d := 0
	for m := leaves; m > 1; m = (m + 1) / 2 {
		d++
	}
	return d
}

// DecodeProofs decodes the proofs answering ch, the challenge of GPUs that
// committed sizes ns: per GPU either an error and no proofs, or one proof
// per cell, in order, each naming its cell and carrying no more siblings
// than the GPU's tree is deep. A line over ProofsLineLimit is refused.
// Whether a proof is right is VerifyProof's job.
func DecodeProofs(line []byte, ch ChallengeRequest, ns []int) (ProofsResponse, error) {
	if len(ns) != len(ch.GPUs) {
		return ProofsResponse{}, fmt.Errorf("decode proofs: %d sizes for a challenge of %d GPUs", len(ns), len(ch.GPUs))
	}
	var r ProofsResponse
	if err := decodeStrict(line, ProofsLineLimit(ch, ns), TypeProofs, &r); err != nil {
		return ProofsResponse{}, err
	}
	if len(r.GPUs) != len(ch.GPUs) {
		return ProofsResponse{}, protoErr("proofs for %d GPUs, %d challenged", len(r.GPUs), len(ch.GPUs))
	}
	for g, gp := range r.GPUs {
		if gp.Error != "" {
			if len(gp.Proofs) != 0 || len(gp.Error) > maxErrorMessage {
				return ProofsResponse{}, protoErr("GPU %d: an error entry must carry no proofs and at most %d bytes", g, maxErrorMessage)
			}
			continue
		}
		cells := ch.GPUs[g]
		depth := MaxPathLen
		if ns[g] > 0 {
			depth = treeDepth(Leaves(ns[g]))
		}
		if len(gp.Proofs) != len(cells) {
			return ProofsResponse{}, protoErr("GPU %d: %d proofs for %d cells", g, len(gp.Proofs), len(cells))
		}
		for k, p := range gp.Proofs {
			if p.I != cells[k].I || p.J != cells[k].J {
				return ProofsResponse{}, protoErr("GPU %d: proof %d is for (%d, %d), challenged (%d, %d)", g, k, p.I, p.J, cells[k].I, cells[k].J)
			}
			if len(p.Path) > depth {
				return ProofsResponse{}, protoErr("GPU %d: proof %d has %d siblings, at most %d", g, k, len(p.Path), depth)
			}
		}
	}
	return r, nil
}

// encodeLine marshals v as one line.
func encodeLine(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ErrLineTooLong is returned by a LineReader for a line over its limit.
var ErrLineTooLong = fmt.Errorf("%w: line too long", ErrProtocol)

// LineReader reads newline-terminated lines of bounded length.
type LineReader struct{ br *bufio.Reader }

// NewLineReader wraps r.
func NewLineReader(r io.Reader) *LineReader {
	return &LineReader{br: bufio.NewReaderSize(r, 64<<10)}
}

// ReadLine returns the next line without its newline. A line longer than
// limit bytes is ErrLineTooLong and the reader is unusable afterwards; input
// that ends without a newline is io.ErrUnexpectedEOF, none at all io.EOF.
func (lr *LineReader) ReadLine(limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := lr.br.ReadSlice('\n')
		if len(line)+len(frag) > limit+1 {
			return nil, ErrLineTooLong
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(line) == 0 {
				return nil, io.EOF
			}
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}
