package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestParseInt(t *testing.T) {
	for in, want := range map[string]uint32{
		"10.2.0": 10002000, "v0.1.0-dev": 1000, "1.8.3": 1008003, "9.12.2+build": 9012002,
		"1.1000.0": 0, "x.y.z": 0, "": 0,
	} {
		if got := parseInt(in); got != want {
			t.Errorf("parseInt(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestGet(t *testing.T) {
	info := Get()
	if info.GoVersion != runtime.Version() || info.Version != Version || info.Commit == "" {
		t.Fatalf("Get() = %+v", info)
	}
	if s := info.String(); !strings.Contains(s, Version) || !strings.Contains(s, runtime.Version()) {
		t.Fatalf("String() = %q", s)
	}
}
