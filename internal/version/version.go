// Package version reports the build's version, commit and Go version. The
// release build sets Version and Commit with -ldflags -X; otherwise the
// module and VCS information embedded by the Go toolchain is used.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// Set at link time: -ldflags "-X github.com/nicompute/nicompute/internal/version.Version=v0.1.0
// -X github.com/nicompute/nicompute/internal/version.Commit=abc123".
var (
	Version = "0.1.0-dev"
	Commit  = ""
)

// Info is the build identity.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
	Modified  bool   `json:"modified,omitempty"`
}

// Get returns the build identity.
func Get() Info {
	info := Info{Version: Version, Commit: Commit, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if info.Commit == "" {
					info.Commit = s.Value
				}
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

// String formats the identity on one line.
func (i Info) String() string {
	c := i.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	if i.Modified {
		c += "-dirty"
	}
	return fmt.Sprintf("nicompute %s (commit %s, %s)", i.Version, c, i.GoVersion)
}

// Int encodes the version as Bittensor's version_as_int
// (major·10⁶ + minor·10³ + patch). Pre-release suffixes are ignored.
func Int() uint32 { return parseInt(Version) }

func parseInt(v string) uint32 {
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	parts := strings.SplitN(v, ".", 3)
	var n [3]uint64
	for i := 0; i < len(parts) && i < 3; i++ {
		x, err := strconv.ParseUint(parts[i], 10, 32)
		if err != nil {
			return 0
		}
		n[i] = x
	}
	if n[1] > 999 || n[2] > 999 || n[0] > 4000 {
		return 0
	}
	return uint32(n[0]*1_000_000 + n[1]*1_000 + n[2])
}
