package pog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

// honestFixture is one honest computation at n = 256 with a challenge and
// its proofs, shared by protocol tests and fuzzers.
type honestFixture struct {
	seed   Seed
	n      int
	res    *cpuResult
	req    ComputeRequest
	commit []byte
	ch     ChallengeRequest
	proofs []byte
	nonce  Seed
	roots  []Hash
}

func newHonestFixture(tb testing.TB) *honestFixture {
	tb.Helper()
	fx := &honestFixture{seed: Seed{0x5e, 0xed, 1}, n: 256, nonce: Seed{0x0c}}
	res, err := cpuCompute(context.Background(), fx.n, fx.seed, 1, cpuOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	fx.res = res
	fx.req = ComputeRequest{Type: TypeCompute, N: fx.n, Seeds: []Seed{fx.seed}}
	fx.commit = mustLine(tb, res.commitment())
	fx.roots = res.residency(fx.nonce)
	fx.ch = ChallengeRequest{Type: TypeChallenge, GPUs: [][]Cell{{{I: 3, J: 200}, {I: 100, J: 7}}},
		Openings: [][]Opening{{{Pass: 0, Chunk: 5}, {Pass: 7, Chunk: 255}}}}
	ps, err := res.prove(fx.ch.GPUs[0])
	if err != nil {
		tb.Fatal(err)
	}
	ops, err := res.open(fx.ch.Openings[0])
	if err != nil {
		tb.Fatal(err)
	}
	fx.proofs = mustLine(tb, ProofsResponse{Type: TypeProofs, GPUs: []GPUProofs{{Proofs: ps, Openings: ops}}})
	return fx
}

func mustLine(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := encodeLine(v)
	if err != nil {
		tb.Fatal(err)
	}
	return bytes.TrimSuffix(b, []byte("\n"))
}

func TestDecodeHonestMessages(t *testing.T) {
	fx := newHonestFixture(t)
	if _, err := DecodeComputeRequest(mustLine(t, fx.req)); err != nil {
		t.Errorf("DecodeComputeRequest: %v", err)
	}
	cr, err := DecodeCommitment(fx.commit, fx.req, make([]bool, 1))
	if err != nil {
		t.Fatalf("DecodeCommitment: %v", err)
	}
	if cr.Root != fx.res.commitment().Root {
		t.Errorf("root changed in transit")
	}
	ch, err := DecodeChallenge(mustLine(t, fx.ch), []int{fx.n})
	if err != nil {
		t.Fatalf("DecodeChallenge: %v", err)
	}
	pr, err := DecodeProofs(fx.proofs, ch, []int{fx.n})
	if err != nil {
		t.Fatalf("DecodeProofs: %v", err)
	}
	if err := VerifyGPU(fx.seed, fx.n, cr.Root, ch.GPUs[0], pr.GPUs[0].Proofs, Tolerance(fx.n), 1); err != nil {
		t.Errorf("VerifyGPU: %v", err)
	}
	for k, op := range ch.Openings[0] {
		if err := VerifyOpening(fx.nonce, fx.n, cr.Root, fx.roots, op, pr.GPUs[0].Openings[k]); err != nil {
			t.Errorf("VerifyOpening %d: %v", k, err)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	fx := newHonestFixture(t)
	commit, proofs := string(fx.commit), string(fx.proofs)
	root := fx.res.commitment().Root.String()
	var p0 Proof
	{
		var pr ProofsResponse
		if err := json.Unmarshal(fx.proofs, &pr); err != nil {
			t.Fatal(err)
		}
		p0 = pr.GPUs[0].Proofs[0]
	}
	chunkHex := strings.ToLower(string(must(p0.Chunk.MarshalText())))
	tests := []struct {
		name   string
		decode func() error
	}{
		{"compute n not a multiple of 256", func() error {
			_, err := DecodeComputeRequest([]byte(`{"type":"compute","n":300,"seeds":["` + strings.Repeat("00", 16) + `"]}`))
			return err
		}},
		{"compute n too large", func() error {
			_, err := DecodeComputeRequest([]byte(`{"type":"compute","n":524288,"seeds":["` + strings.Repeat("00", 16) + `"]}`))
			return err
		}},
		{"compute nine seeds", func() error {
			s := `"` + strings.Repeat("00", 16) + `"`
			_, err := DecodeComputeRequest([]byte(`{"type":"compute","n":256,"seeds":[` + strings.Repeat(s+",", 8) + s + `]}`))
			return err
		}},
		{"compute short seed", func() error {
			_, err := DecodeComputeRequest([]byte(`{"type":"compute","n":256,"seeds":["00"]}`))
			return err
		}},
		{"compute seed as number", func() error {
			_, err := DecodeComputeRequest([]byte(`{"type":"compute","n":256,"seeds":[1]}`))
			return err
		}},
		{"commit root not hex", func() error {
			_, err := DecodeCommitment([]byte(strings.Replace(commit, root, strings.Repeat("zz", 32), 1)), fx.req, make([]bool, 1))
			return err
		}},
		{"commit unknown field", func() error {
			_, err := DecodeCommitment([]byte(strings.Replace(commit, `"gpu"`, `"bonus":1,"gpu"`, 1)), fx.req, make([]bool, 1))
			return err
		}},
		{"commit too long", func() error {
			_, err := DecodeCommitment(append(fx.commit, bytes.Repeat([]byte(" "), MaxCommitLine)...), fx.req, make([]bool, 1))
			return err
		}},
		{"proofs chunk short", func() error {
			_, err := DecodeProofs([]byte(strings.Replace(proofs, chunkHex, chunkHex[:2046], 1)), fx.ch, []int{fx.n})
			return err
		}},
		{"proofs for another cell", func() error {
			_, err := DecodeProofs([]byte(strings.Replace(proofs, `"i":3,`, `"i":4,`, 1)), fx.ch, []int{fx.n})
			return err
		}},
		{"proofs path too long", func() error {
			h := `"` + strings.Repeat("00", 32) + `"`
			_, err := DecodeProofs([]byte(strings.Replace(proofs, `"path":[`, `"path":[`+strings.Repeat(h+",", MaxPathLen), 1)), fx.ch, []int{fx.n})
			return err
		}},
		{"proofs error with proofs", func() error {
			_, err := DecodeProofs([]byte(strings.Replace(proofs, `{"proofs":[`, `{"error":"x","proofs":[`, 1)), fx.ch, []int{fx.n})
			return err
		}},
		{"challenge cell outside", func() error {
			_, err := DecodeChallenge([]byte(`{"type":"challenge","gpus":[[{"i":256,"j":0}]],"openings":[[]]}`), []int{256})
			return err
		}},
		{"challenge empty", func() error {
			_, err := DecodeChallenge([]byte(`{"type":"challenge","gpus":[[]],"openings":[[]]}`), []int{256})
			return err
		}},
		{"challenge opening of pass 8", func() error {
			_, err := DecodeChallenge([]byte(`{"type":"challenge","gpus":[[{"i":1,"j":0}]],"openings":[[{"pass":8,"chunk":0}]]}`), []int{256})
			return err
		}},
		{"challenge opening outside", func() error {
			_, err := DecodeChallenge([]byte(`{"type":"challenge","gpus":[[{"i":1,"j":0}]],"openings":[[{"pass":0,"chunk":256}]]}`), []int{256})
			return err
		}},
		{"residency with 7 roots", func() error {
			h := `"` + strings.Repeat("00", 32) + `"`
			_, err := DecodeResidency([]byte(`{"type":"resident","gpu":0,"roots":[`+strings.Repeat(h+",", 6)+h+`]}`), make([]bool, 1))
			return err
		}},
		{"residency for GPU 1 of 1", func() error {
			_, err := DecodeResidency([]byte(`{"type":"resident","gpu":1,"roots":[]}`), make([]bool, 1))
			return err
		}},
		{"second commitment for GPU 0", func() error {
			_, err := DecodeCommitment(fx.commit, fx.req, []bool{true})
			return err
		}},
		{"opening for another chunk", func() error {
			_, err := DecodeProofs([]byte(strings.Replace(proofs, `"chunk":5,`, `"chunk":6,`, 1)), fx.ch, []int{fx.n})
			return err
		}},
		{"hello with control characters", func() error {
			_, err := DecodeHello([]byte(`{"type":"hello","version":2,"backend":"cpu","simulated":false,"gpus":[{"index":0,"name":"a\u0007b","memory_bytes":1}]}`))
			return err
		}},
		{"hello with 65 GPUs", func() error {
			g := `{"index":0,"name":"x","memory_bytes":1}`
			_, err := DecodeHello([]byte(`{"type":"hello","version":1,"backend":"cpu","simulated":false,"gpus":[` + strings.Repeat(g+",", 64) + g + `]}`))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.decode()
			if !errors.Is(err, ErrProtocol) {
				t.Errorf("error %v, want ErrProtocol", err)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestLineReader(t *testing.T) {
	lr := NewLineReader(strings.NewReader("short\n" + strings.Repeat("x", 100) + "\n"))
	if l, err := lr.ReadLine(10); err != nil || string(l) != "short" {
		t.Fatalf("ReadLine = %q, %v", l, err)
	}
	if _, err := lr.ReadLine(10); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("long line: %v, want ErrLineTooLong", err)
	}
	big := strings.Repeat("y", 200<<10)
	lr = NewLineReader(strings.NewReader(big + "\nend"))
	if l, err := lr.ReadLine(300 << 10); err != nil || len(l) != len(big) {
		t.Fatalf("line over the buffer size: %d bytes, %v", len(l), err)
	}
	if _, err := lr.ReadLine(10); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("unterminated line: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := NewLineReader(strings.NewReader("")).ReadLine(10); !errors.Is(err, io.EOF) {
		t.Fatalf("empty input: %v, want io.EOF", err)
	}
}

func FuzzDecodeCommitment(f *testing.F) {
	fx := newHonestFixture(f)
	f.Add(fx.commit)
	f.Add([]byte(`{"type":"commit","gpu":0,"n":0,"root":"` + strings.Repeat("00", 32) + `","timings":{"generate_ms":0,"multiply_ms":0,"hash_ms":0,"tree_ms":0},"error":"oom"}`))
	f.Add([]byte(`{"type":"error","message":"no"}`))
	f.Add([]byte(`{"type":"commit","gpu":-1}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := DecodeCommitment(line, fx.req, make([]bool, 1))
		if err != nil {
			var we *WorkerError
			if !errors.Is(err, ErrProtocol) && !errors.As(err, &we) {
				t.Fatalf("error %v is neither ErrProtocol nor a WorkerError", err)
			}
			return
		}
		if r.GPU != 0 {
			t.Fatalf("commitment for GPU %d accepted for 1 GPU", r.GPU)
		}
		if r.Error == "" && (!validN(r.N) || r.N > fx.n) {
			t.Fatalf("accepted n = %d", r.N)
		}
		again, err := DecodeCommitment(mustLine(t, r), fx.req, make([]bool, 1))
		if err != nil || again.Root != r.Root {
			t.Fatalf("re-encoded commitment does not decode the same: %v", err)
		}
	})
}

func FuzzDecodeProofs(f *testing.F) {
	fx := newHonestFixture(f)
	f.Add(fx.proofs)
	f.Add([]byte(`{"type":"proofs","gpus":[{"proofs":[],"error":"lost"}]}`))
	f.Add(fx.proofs[:len(fx.proofs)/2])
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := DecodeProofs(line, fx.ch, []int{fx.n})
		if err != nil {
			var we *WorkerError
			if !errors.Is(err, ErrProtocol) && !errors.As(err, &we) {
				t.Fatalf("error %v is neither ErrProtocol nor a WorkerError", err)
			}
			return
		}
		gp := r.GPUs[0]
		if gp.Error != "" {
			return
		}
		if len(gp.Proofs) != len(fx.ch.GPUs[0]) {
			t.Fatalf("%d proofs accepted for %d cells", len(gp.Proofs), len(fx.ch.GPUs[0]))
		}
		// Whatever decodes must verify only if it is the honest opening.
		for k, p := range gp.Proofs {
			cell := fx.ch.GPUs[0][k]
			if _, err := VerifyProof(fx.seed, fx.n, fx.res.commitment().Root, cell, p, Tolerance(fx.n)); err == nil {
				honest, _ := fx.res.prove([]Cell{cell})
				if p.Chunk != honest[0].Chunk {
					t.Fatalf("a chunk other than the committed one verified for %v", cell)
				}
			}
		}
	})
}

func FuzzVerifyProof(f *testing.F) {
	fx := newHonestFixture(f)
	root := fx.res.commitment().Root
	f.Add(uint16(3), uint16(200), []byte{}, uint16(0), byte(0))
	f.Add(uint16(100), uint16(7), []byte{1, 2, 3}, uint16(5), byte(1))
	f.Add(uint16(255), uint16(255), []byte{0xff}, uint16(1023), byte(2))
	f.Fuzz(func(t *testing.T, i, j uint16, patch []byte, at uint16, pathEdit byte) {
		cell := Cell{I: int(i) % (fx.n + 1), J: int(j) % (fx.n + 1)} // n itself is outside
		var p Proof
		if cell.I < fx.n && cell.J < fx.n {
			ps, err := fx.res.prove([]Cell{cell})
			if err != nil {
				t.Fatal(err)
			}
			p = ps[0]
		} else {
			p = Proof{I: cell.I, J: cell.J}
		}
		honest := p
		honest.Path = append([]Hash(nil), p.Path...)
		for k, b := range patch {
			p.Chunk[(int(at)+k)%ChunkBytes] ^= b
		}
		switch pathEdit % 4 {
		case 1:
			if len(p.Path) > 0 {
				p.Path = p.Path[:len(p.Path)-1]
			}
		case 2:
			p.Path = append(p.Path, Hash{byte(at)})
		case 3:
			if len(p.Path) > 0 {
				p.Path[int(at)%len(p.Path)][0] ^= 1
			}
		}
		_, err := VerifyProof(fx.seed, fx.n, root, cell, p, Tolerance(fx.n))
		changed := p.Chunk != honest.Chunk || len(p.Path) != len(honest.Path)
		for k := 0; !changed && k < len(p.Path); k++ {
			changed = p.Path[k] != honest.Path[k]
		}
		inside := cell.I < fx.n && cell.J < fx.n
		switch {
		case inside && !changed && err != nil:
			t.Fatalf("honest proof for %v rejected: %v", cell, err)
		case (changed || !inside) && err == nil:
			t.Fatalf("altered proof for %v accepted", cell)
		}
	})
}

func FuzzDecodeHello(f *testing.F) {
	f.Add([]byte(strings.TrimSuffix(goodHello, "\n")))
	f.Add([]byte(`{"type":"hello","version":1,"backend":"sim","simulated":true,"gpus":[]}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		info, err := DecodeHello(line)
		if err != nil {
			return
		}
		if err := info.Validate(); err != nil {
			t.Fatalf("decoded hello does not validate: %v", err)
		}
		for _, g := range info.GPUs {
			if len(g.Name) > maxNameLen || !printable(g.Name) {
				t.Fatalf("accepted name %q", g.Name)
			}
		}
	})
}

// The worker's side: compute requests and challenges come from the
// validator, and a worker must not crash on them either.
func FuzzDecodeWorkerRequests(f *testing.F) {
	fx := newHonestFixture(f)
	f.Add(mustLine(f, fx.req))
	f.Add(mustLine(f, fx.ch))
	f.Add([]byte(`{"type":"compute","n":256,"seeds":["00000000000000000000000000000000"],"sim_time_scale":0.5}`))
	f.Add([]byte(`{"type":"ping","seq":2}`))
	f.Add([]byte(`{"type":"residency","nonces":["00000000000000000000000000000000"]}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		if r, err := DecodeComputeRequest(line); err == nil {
			if !validN(r.N) || len(r.Seeds) < 1 || len(r.Seeds) > MaxGPUs {
				t.Fatalf("accepted %+v", r)
			}
		}
		if ch, err := DecodeChallenge(line, []int{fx.n}); err == nil {
			for _, c := range ch.GPUs[0] {
				if c.I < 0 || c.I >= fx.n || c.J < 0 || c.J >= fx.n {
					t.Fatalf("accepted cell %v", c)
				}
			}
			if _, err := fx.res.prove(ch.GPUs[0]); err != nil {
				t.Fatalf("a decoded challenge cannot be proved: %v", err)
			}
			if _, err := fx.res.open(ch.Openings[0]); err != nil {
				t.Fatalf("a decoded challenge cannot be opened: %v", err)
			}
		}
		if p, err := DecodePing(line, TypePing); err == nil && (p.Seq < 0 || p.Seq > maxSeq) {
			t.Fatalf("accepted ping %+v", p)
		}
		if r, err := DecodeResidencyRequest(line, 1); err == nil && len(r.Nonces) != 1 {
			t.Fatalf("accepted residency %+v", r)
		}
	})
}

// ProofsLineLimit admits the largest honest answer to a challenge and
// little more: an honest line padded by a few hundred KiB is refused.
func TestProofsLineLimit(t *testing.T) {
	fx := newHonestFixture(t)
	t.Run("padded honest line refused", func(t *testing.T) {
		padded := strings.Replace(string(fx.proofs), `"gpus":`, strings.Repeat(" ", 256<<10)+`"gpus":`, 1)
		if _, err := DecodeProofs([]byte(padded), fx.ch, []int{fx.n}); !errors.Is(err, ErrProtocol) {
			t.Fatalf("padded proofs line: %v, want ErrProtocol", err)
		}
	})
	for _, tc := range []struct {
		name     string
		gpus, n  int
		cells    int
		maxBytes int
	}{
		{"8 × 80 GB at the default challenge", 8, 114688, DefaultChallenges, 8 << 20},
		{"8 × H200 at the default challenge", 8, 152576, DefaultChallenges, 8 << 20},
		{"8 GPUs at MaxN and MaxChallenges", 8, MaxN, MaxChallenges, 16 << 20},
		{"1 GPU at n = 256", 1, 256, DefaultChallenges, 512 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := ChallengeRequest{Type: TypeChallenge, GPUs: make([][]Cell, tc.gpus), Openings: make([][]Opening, tc.gpus)}
			ns := make([]int, tc.gpus)
			resp := ProofsResponse{Type: TypeProofs, GPUs: make([]GPUProofs, tc.gpus)}
			depth := PathLen(Leaves(tc.n), 0)
			for g := range ch.GPUs {
				ns[g] = tc.n
				for k := range tc.cells {
					c := Cell{I: tc.n - 1 - k, J: tc.n - 1}
					ch.GPUs[g] = append(ch.GPUs[g], c)
					resp.GPUs[g].Proofs = append(resp.GPUs[g].Proofs, Proof{I: c.I, J: c.J, Path: make([]Hash, depth)})
				}
				outDepth := PathLen(OutputLeaves(tc.n), 0)
				for k := range ResidencyPasses * ResidencyOpenings {
					o := Opening{Pass: k % ResidencyPasses, Chunk: Leaves(tc.n) - 1 - k}
					ch.Openings[g] = append(ch.Openings[g], o)
					resp.GPUs[g].Openings = append(resp.GPUs[g].Openings, OpeningProof{Pass: o.Pass, Chunk: o.Chunk, Path: make([]Hash, depth), OutPath: make([]Hash, outDepth)})
				}
			}
			line := mustLine(t, resp)
			limit := ProofsLineLimit(ch, ns)
			if _, err := DecodeProofs(line, ch, ns); err != nil {
				t.Fatalf("honest line of %d bytes refused (limit %d): %v", len(line), limit, err)
			}
			if limit > tc.maxBytes || limit > 2*len(line) {
				t.Fatalf("limit %d bytes for an honest line of %d bytes (at most %d wanted)", limit, len(line), tc.maxBytes)
			}
			t.Logf("honest line %d bytes, limit %d", len(line), limit)
		})
	}
}
