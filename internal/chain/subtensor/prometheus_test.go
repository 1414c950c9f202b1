package subtensor

import (
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
)

// TestServePrometheus checks the serve_prometheus call is encoded from
// the recorded runtime's metadata: SubtensorModule (pallet 7) call 5,
// netuid u16, version u32, ip u128, port u16, ip_type u8, all little
// endian.
func TestServePrometheus(t *testing.T) {
	k := alice(t)
	c, s := newScriptedNode(t)
	err := c.ServePrometheus(t.Context(), k, 27, subnet.PrometheusInfo{IP: "192.222.59.109", Port: 9100, Version: 9011001})
	if err != nil {
		t.Fatal(err)
	}
	s.checkSubmitted(t, k, h(t, "07 05  1b00  397f8900  6d3bdec0 000000000000000000000000  8c23  04"))
	for _, bad := range []subnet.PrometheusInfo{{IP: "example.com", Port: 1}, {IP: "1.2.3.4"}, {IP: "1.2.3.4", Port: 1, IPType: 6}} {
		if err := c.ServePrometheus(t.Context(), k, 27, bad); subnet.ErrorCode(err) != subnet.EINVALID {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	if n := len(s.node.Called("author_submitAndWatchExtrinsic")); n != 1 {
		t.Fatalf("%d submissions", n)
	}
}

// TestReplayMetagraphPrometheus reads the prometheus_info of the recorded
// finney netuid 1 metagraph: uid 502 served one, most did not.
func TestReplayMetagraphPrometheus(t *testing.T) {
	c, _, _ := startReplay(t, "metagraph")
	mg, err := c.Metagraph(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := mg.ByUID(502)
	want := subnet.PrometheusInfo{Block: 1353655, Version: 534, IP: "147.189.197.178", Port: 6671, IPType: 4}
	if n.Prometheus != want {
		t.Fatalf("uid 502 prometheus %+v, want %+v", n.Prometheus, want)
	}
	served := 0
	for _, n := range mg.Neurons {
		if n.Prometheus.Port != 0 {
			served++
		}
	}
	if served != 2 {
		t.Fatalf("%d neurons with prometheus info, want 2", served)
	}
}

// TestDecodeNeuronPrometheus decodes a hand-encoded NeuronInfoLite whose
// prometheus_info is set, and refuses one with an impossible ip_type.
func TestDecodeNeuronPrometheus(t *testing.T) {
	m, vec := neuronRegistry()
	const axonTail = "5000" + "04" + "04" + "00" + "00"
	empty := axonTail + "0000000000000000" + "00000000" + "00000000000000000000000000000000" + "0000" + "00"
	served := axonTail + "0a00000000000000" + "07000000" + "0200000a000000000000000000000000" + "8d23" + "04"
	if !strings.Contains(oneNeuron, empty) {
		t.Fatal("fixture changed")
	}
	v, err := m.decodeAll(h(t, strings.Replace(oneNeuron, empty, served, 1)), vec)
	if err != nil {
		t.Fatal(err)
	}
	n, err := neuronFromLite(v.([]any)[0], 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := (subnet.PrometheusInfo{Block: 10, Version: 7, IP: "10.0.0.2", Port: 9101, IPType: 4}); n.Prometheus != want {
		t.Fatalf("prometheus %+v, want %+v", n.Prometheus, want)
	}
	bad := axonTail + "0a00000000000000" + "07000000" + "0200000a000000000000000000000000" + "8d23" + "09"
	v, err = m.decodeAll(h(t, strings.Replace(oneNeuron, empty, bad, 1)), vec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := neuronFromLite(v.([]any)[0], 1); err == nil || !strings.Contains(err.Error(), "prometheus") {
		t.Fatalf("ip_type 9 accepted: %v", err)
	}
}

// TestBlockTime reads Timestamp.Now (milliseconds) from a scripted node.
func TestBlockTime(t *testing.T) {
	c, s := newScriptedNode(t)
	k, _, err := s.m.storageKey("Timestamp", "Now")
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.storage[hexBytes(k)] = "0x" + "a0e6c8b69b010000" // 1767225600000 ms LE
	s.mu.Unlock()
	got, err := c.BlockTime(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := time.UnixMilli(0x019bb6c8e6a0).UTC(); !got.Equal(want) {
		t.Fatalf("block time %v, want %v", got, want)
	}
}
