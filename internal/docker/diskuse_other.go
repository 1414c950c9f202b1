//go:build !linux

package docker

import "errors"

// maxLayerDepth: see diskuse_linux.go.
const maxLayerDepth = 1024

var errTooDeep = errors.New("directory tree deeper than the measurement walks")

// Only Linux hosts the engine's layers: elsewhere DiskUsage falls back to
// the engine's measure.
func layerUsage(string) (int64, error) {
	return 0, errors.New("measuring a layer needs Linux")
}

type procTable struct{}

func pidNamespaces() procTable { return procTable{} }

func (procTable) openDeleted(int) int64 { return 0 }

func filesUsage([]string) int64 { return 0 }
