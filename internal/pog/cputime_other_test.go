//go:build !unix

package pog

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
