package subnet

import (
	"math"
	"testing"
)

func TestParseTAO(t *testing.T) {
	tests := []struct {
		in      string
		want    Balance
		wantErr bool
	}{
		{"1", 1_000_000_000, false},
		{"0.5", 500_000_000, false},
		{".25", 250_000_000, false},
		{"1024.000000001", 1_024_000_000_001, false},
		{" 7 τ", 7_000_000_000, false},
		{"0", 0, false},
		{"", 0, true},
		{"-1", 0, true},
		{"1.", 0, true},
		{"1e3", 0, true},
		{"0.0000000001", 0, true}, // below one rao
		{"18446744073", 0, true},  // overflows u64 rao
		{"abc", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTAO(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseTAO(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("ParseTAO(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestBalanceString(t *testing.T) {
	for b, want := range map[Balance]string{0: "0 τ", 1: "0.000000001 τ", 1_500_000_000: "1.5 τ", 1024 * RaoPerTAO: "1024 τ"} {
		if got := b.String(); got != want {
			t.Errorf("Balance(%d).String() = %q, want %q", b, got, want)
		}
		if back, err := ParseTAO(b.String()); err != nil || back != b {
			t.Errorf("round trip of %d: %d, %v", b, back, err)
		}
	}
	if TAO(-1) != 0 || TAO(math.NaN()) != 0 || TAO(0.5) != 500_000_000 {
		t.Error("TAO conversion of edge values")
	}
}

func TestMaxUpscale(t *testing.T) {
	tests := []struct {
		name    string
		uids    []UID
		weights []float64
		wantU   []UID
		wantW   []uint16
		wantErr bool
	}{
		// Bittensor's convert_weights_and_uids_for_emit: w / max(w) · 65535,
		// rounded, zeros dropped.
		{"proportional", []UID{1, 2}, []float64{0.7, 0.3}, []UID{1, 2}, []uint16{65535, 28086}, false},
		{"zeros dropped", []UID{0, 1, 2}, []float64{0, 1, 0.5}, []UID{1, 2}, []uint16{65535, 32768}, false},
		{"tiny rounds to zero", []UID{3, 4}, []float64{1, 1e-9}, []UID{3}, []uint16{65535}, false},
		{"all zero", []UID{1, 2}, []float64{0, 0}, []UID{}, []uint16{}, false},
		{"negative", []UID{1}, []float64{-1}, nil, nil, true},
		{"nan", []UID{1}, []float64{math.NaN()}, nil, nil, true},
		{"inf", []UID{1}, []float64{math.Inf(1)}, nil, nil, true},
		{"duplicate uid", []UID{1, 1}, []float64{1, 1}, nil, nil, true},
		{"length mismatch", []UID{1, 2}, []float64{1}, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, w, err := MaxUpscale(tt.uids, tt.weights)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				if ErrorCode(err) != EINVALIDWEIGHTS {
					t.Fatalf("code = %s", ErrorCode(err))
				}
				return
			}
			if len(u) != len(tt.wantU) || len(w) != len(tt.wantW) {
				t.Fatalf("got %v %v, want %v %v", u, w, tt.wantU, tt.wantW)
			}
			for i := range u {
				if u[i] != tt.wantU[i] || w[i] != tt.wantW[i] {
					t.Fatalf("got %v %v, want %v %v", u, w, tt.wantU, tt.wantW)
				}
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	got := Normalize([]uint16{65535, 21845, 0})
	if math.Abs(got[0]-0.75) > 1e-12 || math.Abs(got[1]-0.25) > 1e-12 || got[2] != 0 {
		t.Fatalf("Normalize = %v", got)
	}
	if z := Normalize([]uint16{0, 0}); z[0] != 0 || z[1] != 0 {
		t.Fatalf("zero row = %v", z)
	}
}

func TestAxonServed(t *testing.T) {
	tests := []struct {
		a    AxonInfo
		want bool
	}{
		{AxonInfo{IP: "1.2.3.4", Port: 8091}, true},
		{AxonInfo{IP: "0.0.0.0", Port: 8091}, false},
		{AxonInfo{IP: "1.2.3.4"}, false},
		{AxonInfo{}, false},
		{AxonInfo{IP: "::", Port: 1}, false},
	}
	for _, tt := range tests {
		if got := tt.a.Served(); got != tt.want {
			t.Errorf("%+v.Served() = %v, want %v", tt.a, got, tt.want)
		}
	}
	if got := (AxonInfo{IP: "2001:db8::1", Port: 22}).Addr(); got != "[2001:db8::1]:22" {
		t.Errorf("IPv6 Addr = %s", got)
	}
}

func TestErrorCode(t *testing.T) {
	if ErrorCode(nil) != "" || ErrorCode(Errorf(ERATELIMITED, "x")) != ERATELIMITED {
		t.Fatal("ErrorCode")
	}
}
