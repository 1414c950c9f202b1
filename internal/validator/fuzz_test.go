package validator

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nicompute/nicompute/internal/pog"
)

// FuzzRealGPUs feeds the CUDA worker's info output, which the miner
// controls, to the parser that decides which worker runs.
func FuzzRealGPUs(f *testing.F) {
	good, _ := json.Marshal(pog.Info{Version: pog.ProtocolVersion, Backend: "cuda", GPUs: []pog.GPUInfo{{Name: "NVIDIA H200", MemoryBytes: 141 << 30}}})
	f.Add(good)
	f.Add([]byte(`{"version":1,"backend":"sim","simulated":true,"gpus":[{"index":0,"name":"NVIDIA H200","memory_bytes":1}]}`))
	f.Add([]byte(`{"gpus":[]}`))
	f.Add([]byte(`{"version":1,"gpus":[` + strings.Repeat(`{"name":"x"},`, 100) + `{}]}`))
	f.Add([]byte("\x00\xff garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ok, why := realGPUs(b)
		if ok != (why == "") {
			t.Fatalf("ok %v with reason %q", ok, why)
		}
		if ok {
			var info pog.Info
			if err := json.Unmarshal(b, &info); err != nil || info.Validate() != nil || info.Simulated || len(info.GPUs) == 0 {
				t.Fatalf("accepted %q", b)
			}
		}
		if !utf8.ValidString(why) || len(why) > 300 {
			t.Fatalf("reason %q", why)
		}
	})
}

// FuzzStderrTail feeds worker stderr, which the miner controls, to what
// turns it into a reason.
func FuzzStderrTail(f *testing.F) {
	f.Add([]byte("error: libcuda.so.1: cannot open shared object file\n"), 7)
	f.Add([]byte("\x1b[31mred\x1b[0m\r\n\xff\xfe"), 1)
	f.Add([]byte(strings.Repeat("a", 5000)), 3)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		tb := &tailBuffer{max: 2048}
		if split < 0 {
			split = -split
		}
		split %= len(b) + 1
		_, _ = tb.Write(b[:split])
		_, _ = tb.Write(b[split:])
		if len(tb.b) > tb.max {
			t.Fatalf("kept %d bytes, max %d", len(tb.b), tb.max)
		}
		s := tb.suffix()
		if len(s) > 210+len("…") || !utf8.ValidString(s) {
			t.Fatalf("suffix %q", s)
		}
		for _, r := range strings.TrimSuffix(s, "…") {
			if r < 0x20 || r >= 0x7f {
				t.Fatalf("unprintable %q in %q", r, s)
			}
		}
	})
}

// FuzzParseSum feeds the hash helper's output, which the miner controls,
// to its parser: only 64 lower-case hex digits and a newline are a hash.
func FuzzParseSum(f *testing.F) {
	f.Add([]byte(strings.Repeat("ab", 32) + "\n"))
	f.Add([]byte(strings.Repeat("AB", 32) + "\n"))
	f.Add([]byte(strings.Repeat("ab", 32)))
	f.Add([]byte("error: no such file\n"))
	f.Add([]byte(strings.Repeat("0", 63) + "g\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sum, err := parseSum(b)
		if err != nil {
			return
		}
		if len(sum) != 64 || string(b) != sum+"\n" {
			t.Fatalf("parsed %q from %q", sum, b)
		}
		if _, err := hex.DecodeString(sum); err != nil || strings.ToLower(sum) != sum {
			t.Fatalf("parsed %q, not lower-case hex", sum)
		}
	})
}
