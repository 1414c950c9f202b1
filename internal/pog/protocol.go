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
	"reflect"
	"strings"
	"unicode"
)

// The session protocol: one line-delimited JSON object per message over the
// stdin/stdout of a single `pog compute` process (an SSH exec session), so C
// stays in GPU memory from the commitment to the last proof.
//
//	worker    → validator  {"type":"hello", "version":2, "backend":…, "simulated":…, "gpus":[…]}
//	validator → worker     {"type":"ping", "seq":k}            (PingCount times, each answered
//	worker    → validator  {"type":"pong", "seq":k}             before the next is sent)
//	validator → worker     {"type":"compute", "n":N, "seeds":["32 hex",…]}
//	worker    → validator  {"type":"commit", "gpu":g, "n":N, "root":"64 hex", "timings":{…}}
//	                       one line per GPU, each sent the moment that GPU is done
//	validator → worker     {"type":"residency", "nonces":["32 hex",…]}
//	worker    → validator  {"type":"resident", "gpu":g, "roots":["64 hex",…]}
//	                       one line per GPU, ResidencyPasses roots each
//	validator → worker     {"type":"challenge", "gpus":[[{"i":…,"j":…},…],…],
//	                        "openings":[[{"pass":…,"chunk":…},…],…]}
//	worker    → validator  {"type":"proofs", "gpus":[{"proofs":[…], "openings":[…]},…]}
//
// The validator times each commit and resident line itself. The worker
// then waits for another ping or compute request or the end of input. It
// may answer any request with {"type":"error","message":…} instead. A GPU
// that failed alone carries "error" in its commit, resident or proofs
// entry.
//
// Decoding is strict: unknown fields, trailing data, oversized lines, counts
// and sizes out of range and malformed hex are errors wrapping ErrProtocol.

// Message types.
const (
	TypeHello     = "hello"
	TypePing      = "ping"
	TypePong      = "pong"
	TypeCompute   = "compute"
	TypeCommit    = "commit"
	TypeResidency = "residency"
	TypeResident  = "resident"
	TypeChallenge = "challenge"
	TypeProofs    = "proofs"
	TypeError     = "error"
)

// Line limits per message type, in bytes without the newline. The proofs
// line's limit depends on the challenge: ProofsLineLimit.
const (
	MaxHelloLine     = 64 << 10
	MaxPingLine      = 256
	MaxComputeLine   = 4 << 10
	MaxCommitLine    = 8 << 10
	MaxResidencyLine = 4 << 10
	MaxResidentLine  = 8 << 10
	MaxChallengeLine = 512 << 10
	maxErrorMessage  = 1024
	maxNameLen       = 256
	maxUUIDLen       = 128
	maxBackendLen    = 32
	maxTimingMS      = 1e9
	maxSeq           = 1 << 30
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

// Ping asks the worker for a Pong with the same Seq at once; the
// validator times the round trip.
type Ping struct {
	Type string `json:"type"`
	Seq  int    `json:"seq"`
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

// Commitment is one GPU's Merkle root over C, sent as its own line the
// moment the GPU is done.
type Commitment struct {
	Type string `json:"type"`
	// GPU is the index of the GPU in the compute request.
	GPU int `json:"gpu"`
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

// ResidencyRequest starts the residency round: GPU g runs
// ResidencyPasses chained passes over its C from Nonces[g].
type ResidencyRequest struct {
	Type   string `json:"type"`
	Nonces []Seed `json:"nonces"`
}

// Residency is one GPU's answer to the residency round: the root of each
// pass's output tree, sent as its own line the moment the GPU is done.
type Residency struct {
	Type  string `json:"type"`
	GPU   int    `json:"gpu"`
	Roots []Hash `json:"roots"`
	Error string `json:"error,omitempty"`
}

// Cell is one element C[I][J].
type Cell struct {
	I int `json:"i"`
	J int `json:"j"`
}

// Opening names one chunk of C to open in one residency pass.
type Opening struct {
	Pass  int `json:"pass"`
	Chunk int `json:"chunk"`
}

// ChallengeRequest lists the cells to prove and the residency chunks to
// open, per GPU of the commitment.
type ChallengeRequest struct {
	Type     string      `json:"type"`
	GPUs     [][]Cell    `json:"gpus"`
	Openings [][]Opening `json:"openings"`
}

// ProofsResponse answers a challenge, one entry per GPU.
type ProofsResponse struct {
	Type string      `json:"type"`
	GPUs []GPUProofs `json:"gpus"`
}

// GPUProofs are one GPU's proofs and openings, in challenge order.
type GPUProofs struct {
	Proofs   []Proof        `json:"proofs"`
	Openings []OpeningProof `json:"openings"`
	Error    string         `json:"error,omitempty"`
}

// Proof opens the chunk holding C[I][J]: its 256 values and the Merkle path
// from its leaf to the root.
type Proof struct {
	I     int    `json:"i"`
	J     int    `json:"j"`
	Chunk Chunk  `json:"chunk"`
	Path  []Hash `json:"path"`
}

// OpeningProof opens chunk Chunk of C (Data, with its path to C's root)
// and the leaf of pass Pass's output tree that holds the chunk's sums
// (Out, with its path to that pass's root).
type OpeningProof struct {
	Pass    int    `json:"pass"`
	Chunk   int    `json:"chunk"`
	Data    Chunk  `json:"data"`
	Path    []Hash `json:"path"`
	Out     Chunk  `json:"out"`
	OutPath []Hash `json:"out_path"`
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

// decodeStrict decodes one JSON object of type typ from line into v (a
// pointer to a struct with a Type field), refusing unknown fields and
// trailing data. A worker's error message decodes into a *WorkerError.
// The line is decoded once when it is what was asked for; only a line that
// is not is read again to say what it is.
func decodeStrict(line []byte, limit int, typ string, v any) error {
	if len(line) > limit {
		return protoErr("%s message of %d bytes exceeds %d", typ, len(line), limit)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && messageType(v) == typ {
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return protoErr("%s message: trailing data", typ)
		}
		return nil
	}
	var head struct {
		Type string `json:"type"`
	}
	if herr := json.Unmarshal(line, &head); herr != nil {
		return protoErr("%s message: %v", typ, herr)
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
	return protoErr("%s message: %v", typ, err)
}

// messageType returns the Type field of the message struct v points to.
func messageType(v any) string {
	f := reflect.ValueOf(v).Elem().FieldByName("Type")
	if f.Kind() != reflect.String {
		return ""
	}
	return f.String()
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

// DecodePing decodes a ping (worker side) or a pong (validator side,
// typ TypePong).
func DecodePing(line []byte, typ string) (Ping, error) {
	var p Ping
	if err := decodeStrict(line, MaxPingLine, typ, &p); err != nil {
		return Ping{}, err
	}
	if p.Seq < 0 || p.Seq > maxSeq {
		return Ping{}, protoErr("%s seq %d out of range", typ, p.Seq)
	}
	return p, nil
}

// DecodeCommitment decodes one GPU's commitment answering req: a GPU of
// the request not seen before (seen is updated), a legal n no larger than
// req.N (smaller only for a simulated GPU; the validator decides whether
// to accept that).
func DecodeCommitment(line []byte, req ComputeRequest, seen []bool) (Commitment, error) {
	var c Commitment
	if err := decodeStrict(line, MaxCommitLine, TypeCommit, &c); err != nil {
		return Commitment{}, err
	}
	if err := checkGPU(c.GPU, seen); err != nil {
		return Commitment{}, err
	}
	if c.Error != "" {
		if len(c.Error) > maxErrorMessage {
			return Commitment{}, protoErr("GPU %d: error message longer than %d bytes", c.GPU, maxErrorMessage)
		}
		return c, nil
	}
	if !validN(c.N) || c.N > req.N {
		return Commitment{}, protoErr("GPU %d: committed n = %d for requested %d", c.GPU, c.N, req.N)
	}
	if err := c.Timings.validate(); err != nil {
		return Commitment{}, protoErr("GPU %d: %v", c.GPU, err)
	}
	return c, nil
}

// checkGPU accepts a GPU index in range that was not answered yet.
func checkGPU(g int, seen []bool) error {
	if g < 0 || g >= len(seen) {
		return protoErr("answer for GPU %d of %d", g, len(seen))
	}
	if seen[g] {
		return protoErr("second answer for GPU %d", g)
	}
	seen[g] = true
	return nil
}

func (t Timings) validate() error {
	for _, v := range []float64{t.GenerateMS, t.MultiplyMS, t.HashMS, t.TreeMS} {
		if !(v >= 0 && v <= maxTimingMS) {
			return fmt.Errorf("timing %v ms outside [0, %g]", v, float64(maxTimingMS))
		}
	}
	return nil
}

// DecodeResidencyRequest decodes a residency request for gpus GPUs.
func DecodeResidencyRequest(line []byte, gpus int) (ResidencyRequest, error) {
	var r ResidencyRequest
	if err := decodeStrict(line, MaxResidencyLine, TypeResidency, &r); err != nil {
		return ResidencyRequest{}, err
	}
	if len(r.Nonces) != gpus {
		return ResidencyRequest{}, protoErr("%d residency nonces for %d GPUs", len(r.Nonces), gpus)
	}
	return r, nil
}

// DecodeResidency decodes one GPU's residency answer: a GPU not seen
// before, and either an error or exactly ResidencyPasses roots.
func DecodeResidency(line []byte, seen []bool) (Residency, error) {
	var r Residency
	if err := decodeStrict(line, MaxResidentLine, TypeResident, &r); err != nil {
		return Residency{}, err
	}
	if err := checkGPU(r.GPU, seen); err != nil {
		return Residency{}, err
	}
	if r.Error != "" {
		if len(r.Error) > maxErrorMessage || len(r.Roots) != 0 {
			return Residency{}, protoErr("GPU %d: an error entry must carry no roots and at most %d bytes", r.GPU, maxErrorMessage)
		}
		return r, nil
	}
	if len(r.Roots) != ResidencyPasses {
		return Residency{}, protoErr("GPU %d: %d residency roots, want %d", r.GPU, len(r.Roots), ResidencyPasses)
	}
	return r, nil
}

// DecodeChallenge decodes a challenge for GPUs that committed sizes ns:
// one list of cells per GPU, 1 to MaxChallenges cells each, inside the
// matrix; and one list of openings per GPU, at most
// ResidencyPasses × MaxResidencyOpenings, each a pass and a chunk in range.
// A GPU with no commitment (n = 0) gets neither.
func DecodeChallenge(line []byte, ns []int) (ChallengeRequest, error) {
	var r ChallengeRequest
	if err := decodeStrict(line, MaxChallengeLine, TypeChallenge, &r); err != nil {
		return ChallengeRequest{}, err
	}
	if len(r.GPUs) != len(ns) || len(r.Openings) != len(ns) {
		return ChallengeRequest{}, protoErr("challenge for %d and %d GPUs, %d committed", len(r.GPUs), len(r.Openings), len(ns))
	}
	for g, cells := range r.GPUs {
		if ns[g] == 0 { // a GPU that failed to commit: nothing to prove
			if len(cells) != 0 || len(r.Openings[g]) != 0 {
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
		if len(r.Openings[g]) > MaxOpenings {
			return ChallengeRequest{}, protoErr("GPU %d: %d openings, at most %d", g, len(r.Openings[g]), MaxOpenings)
		}
		for _, o := range r.Openings[g] {
			if err := o.check(ns[g]); err != nil {
				return ChallengeRequest{}, protoErr("GPU %d: %v", g, err)
			}
		}
	}
	return r, nil
}

// MaxOpenings bounds the residency openings per GPU of one challenge.
const MaxOpenings = 4 * ResidencyPasses * ResidencyOpenings

func (o Opening) check(n int) error {
	if o.Pass < 0 || o.Pass >= ResidencyPasses {
		return fmt.Errorf("opening of pass %d, want 0 to %d", o.Pass, ResidencyPasses-1)
	}
	if o.Chunk < 0 || o.Chunk >= Leaves(n) {
		return fmt.Errorf("opening of chunk %d outside %d", o.Chunk, Leaves(n))
	}
	return nil
}

// Sizes of a proofs line's parts as encoding/json writes them, with room
// for whitespace between tokens: a proof's fixed part (braces, keys, two
// indices up to MaxN, the quoted chunk), an opening's (two quoted chunks),
// one path entry (a quoted hash and a comma), one GPU entry without its
// proofs (an error message JSON may escape to six bytes per byte), and the
// envelope.
const (
	proofFixedBytes   = 2*ChunkBytes + 160
	openingFixedBytes = 4*ChunkBytes + 200
	pathEntryBytes    = 2*len(Hash{}) + 8
	gpuEntryBytes     = 6*maxErrorMessage + 96
	proofsSlackBytes  = 4 << 10
)

// ProofsLineLimit is the longest proofs line a worker may send for ch, the
// challenge of GPUs that committed sizes ns: per challenged cell the chunk
// in hex and the Merkle path of a tree of Leaves(n) leaves, per opening
// two chunks and the paths of C's tree and of a pass's output tree, plus
// each GPU's entry and some slack. Everything beyond is refused unread, so
// a session holds at most about what an honest answer needs (about 4 MiB
// for 8 GPUs of 80 GB) rather than a fixed worst case.
func ProofsLineLimit(ch ChallengeRequest, ns []int) int {
	total := proofsSlackBytes
	for g, cells := range ch.GPUs {
		depth, outDepth := MaxPathLen, MaxPathLen
		if g < len(ns) && ns[g] > 0 {
			depth, outDepth = treeDepth(Leaves(ns[g])), treeDepth(OutputLeaves(ns[g]))
		}
		total += gpuEntryBytes + len(cells)*(proofFixedBytes+depth*pathEntryBytes)
		if g < len(ch.Openings) {
			total += len(ch.Openings[g]) * (openingFixedBytes + (depth+outDepth)*pathEntryBytes)
		}
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
// committed sizes ns: per GPU either an error and nothing else, or one
// proof per cell and one opening proof per opening, in order, each naming
// what it opens and carrying no more siblings than the tree is deep. A
// line over ProofsLineLimit is refused. Whether a proof is right is
// VerifyProof's and VerifyOpening's job.
func DecodeProofs(line []byte, ch ChallengeRequest, ns []int) (ProofsResponse, error) {
	if len(ns) != len(ch.GPUs) || len(ns) != len(ch.Openings) {
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
			if len(gp.Proofs) != 0 || len(gp.Openings) != 0 || len(gp.Error) > maxErrorMessage {
				return ProofsResponse{}, protoErr("GPU %d: an error entry must carry no proofs and at most %d bytes", g, maxErrorMessage)
			}
			continue
		}
		cells := ch.GPUs[g]
		depth, outDepth := MaxPathLen, MaxPathLen
		if ns[g] > 0 {
			depth, outDepth = treeDepth(Leaves(ns[g])), treeDepth(OutputLeaves(ns[g]))
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
		ops := ch.Openings[g]
		if len(gp.Openings) != len(ops) {
			return ProofsResponse{}, protoErr("GPU %d: %d opening proofs for %d openings", g, len(gp.Openings), len(ops))
		}
		for k, p := range gp.Openings {
			if p.Pass != ops[k].Pass || p.Chunk != ops[k].Chunk {
				return ProofsResponse{}, protoErr("GPU %d: opening %d is of pass %d chunk %d, challenged pass %d chunk %d", g, k, p.Pass, p.Chunk, ops[k].Pass, ops[k].Chunk)
			}
			if len(p.Path) > depth || len(p.OutPath) > outDepth {
				return ProofsResponse{}, protoErr("GPU %d: opening %d has %d and %d siblings, at most %d and %d", g, k, len(p.Path), len(p.OutPath), depth, outDepth)
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
