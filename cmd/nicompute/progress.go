package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows the steps of a start-up: a bar on a terminal, one line
// per step otherwise.
type progress struct {
	bar  *progressbar.ProgressBar
	out  io.Writer
	name string
}

func (a *app) newProgress(total int, name string) *progress {
	p := &progress{out: a.Err, name: name}
	if f, ok := a.Err.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(a.Err),
			progressbar.OptionSetDescription(name),
			progressbar.OptionShowCount(),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetWidth(30),
		)
	}
	return p
}

func (p *progress) step(what string) {
	if p.bar == nil {
		fmt.Fprintf(p.out, "%s: %s\n", p.name, what)
		return
	}
	p.bar.Describe(p.name + ": " + what)
	_ = p.bar.Add(1)
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

// waitingEvery is how often waiting reports on a stream that is not a
// terminal.
const waitingEvery = 5 * time.Second

// waiting shows, on stderr, that the command waits for what (at most
// limit; 0: no limit): a spinner with the elapsed time on a terminal, else
// a line at once and one every waitingEvery. The returned func stops it.
func (a *app) waiting(what string, limit time.Duration) (stop func()) {
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	of := ""
	if limit > 0 {
		of = " of " + limit.String()
	}
	if f, ok := a.Err.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		bar := progressbar.NewOptions(-1,
			progressbar.OptionSetWriter(a.Err),
			progressbar.OptionSetDescription(what),
			progressbar.OptionSpinnerType(14),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetElapsedTime(true),
		)
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-done:
					_ = bar.Finish()
					return
				case <-t.C:
					_ = bar.Add(1)
				}
			}
		}()
	} else {
		fmt.Fprintf(a.Err, "%s…\n", what)
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(waitingEvery)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					fmt.Fprintf(a.Err, "still %s (%s%s)\n", what, time.Since(start).Round(time.Second), of)
				}
			}
		}()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}
