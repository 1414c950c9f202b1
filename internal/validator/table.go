package validator

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Miner is one row of the miner table.
type Miner struct {
	UID    uint16  `json:"uid"`
	Hotkey string  `json:"hotkey"`
	GPUs   string  `json:"gpus"`
	Score  float64 `json:"score"`
	Rented bool    `json:"rented"`
	// LastResult is the newest test's outcome ("" when never tested) and
	// Reason its reason, or why the miner was not tested.
	LastResult string `json:"last_result"`
	LastBlock  uint64 `json:"last_block,omitempty"`
	Reason     string `json:"reason"`
	// Code classifies the newest test (a stable short code, see
	// market.PoGCode); Consequence and Remedy say what it costs the miner
	// and what the miner can do.
	Code        string `json:"code,omitempty"`
	Consequence string `json:"consequence,omitempty"`
	Remedy      string `json:"remedy,omitempty"`
}

// Miners returns the miner table: every neuron but the validator, by uid.
func (s *Service) Miners() []Miner {
	ms := s.scores()
	out := make([]Miner, 0, len(ms))
	for _, m := range ms {
		row := Miner{UID: uint16(m.Neuron.UID), Hotkey: m.Neuron.Hotkey, Score: m.Score, Rented: m.Rented, GPUs: "-"}
		if m.Basis != nil {
			row.GPUs = fmt.Sprintf("%d × %s", m.Basis.Count, m.Basis.Model)
		}
		if m.Last != nil {
			row.LastResult, row.LastBlock, row.Reason = string(m.Last.Outcome), m.Last.Block, m.Last.Reason
			if m.Last.DeallocError != "" {
				row.Reason += "; " + m.Last.DeallocError
			}
			if c := m.Last.Code; c != "" {
				e := c.Explain()
				row.Code, row.Consequence, row.Remedy = string(c), e.Consequence, e.Remedy
			}
		}
		if m.Skipped != "" {
			row.Reason = "not tested: " + m.Skipped
		}
		out = append(out, row)
	}
	return out
}

// WriteTable writes the miner table as aligned text.
func WriteTable(w io.Writer, rows []Miner) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UID\tHOTKEY\tVERIFIED GPUS\tSCORE\tRENTED\tLAST POG\tCODE\tREASON\tREMEDY")
	for _, r := range rows {
		last := "never"
		if r.LastResult != "" {
			last = fmt.Sprintf("%s @%d", r.LastResult, r.LastBlock)
		}
		rented := "no"
		if r.Rented {
			rented = "yes"
		}
		code := r.Code
		if code == "" {
			code = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.4f\t%s\t%s\t%s\t%s\t%s\n", r.UID, short(r.Hotkey), r.GPUs, r.Score, rented, last, code, clean(r.Reason, 100), clean(r.Remedy, 80))
	}
	return tw.Flush()
}

// short abbreviates an SS58 address.
func short(h string) string {
	if len(h) <= 12 {
		return h
	}
	return h[:6] + "…" + h[len(h)-4:]
}

// report logs the table's summary and writes the table to Config.Report.
func (s *Service) report(why string) {
	rows := s.Miners()
	scored := 0
	for _, r := range rows {
		if r.Score > 0 {
			scored++
		}
	}
	s.log.Info("miner table", "why", why, "miners", len(rows), "scored", scored)
	if s.cfg.Report == nil {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "validator uid %d, subnet %d: %s\n", s.UID(), s.cfg.NetUID, why)
	if st := s.WeightsSummary(); st != "" {
		fmt.Fprintf(&b, "%s\n", st)
	}
	_ = WriteTable(&b, rows)
	_, _ = io.WriteString(s.cfg.Report, b.String())
}
