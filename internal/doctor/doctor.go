// Package doctor checks that a machine is ready to run a nicompute role
// (miner, validator or the allocation API) and says, for each finding,
// what it means and what to do. Every check is a small function over
// Probes, an interface the command implements with the real Docker
// engine, nvidia-smi, the packet filter, ufw, the chain and the
// filesystem, and tests implement with fakes to drive each outcome.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
)

// Status is a check's verdict.
type Status string

// Verdicts: pass (ready), warn (works, but something is off or could not
// be checked) and fail (the role will not work as it should).
const (
	Pass Status = "pass"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Result is one check's finding.
type Result struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	// Found is what was observed; Meaning what it means for the role;
	// Remedy what to do (empty on pass).
	Found   string `json:"found"`
	Meaning string `json:"meaning,omitempty"`
	Remedy  string `json:"remedy,omitempty"`
}

// Report is the outcome of every check of a role.
type Report struct {
	Role    string    `json:"role"`
	At      time.Time `json:"at"`
	Results []Result  `json:"results"`
}

// Failed reports whether any check failed.
func (r Report) Failed() bool {
	for _, x := range r.Results {
		if x.Status == Fail {
			return true
		}
	}
	return false
}

// Counts returns the number of results of each status.
func (r Report) Counts() map[Status]int {
	c := map[Status]int{}
	for _, x := range r.Results {
		c[x.Status]++
	}
	return c
}

// Roles are the roles doctor knows.
var Roles = []string{"miner", "validator", "api"}

// Config is what the checks compare against.
type Config struct {
	Role   string
	NetUID subnet.NetUID
	// Hotkey is the role's hotkey address.
	Hotkey string
	// AxonPort and SSHPorts are a miner's ports; ExternalIP the address it
	// serves on chain ("" for the default route's).
	AxonPort   int
	SSHPorts   [2]int
	ExternalIP string
	// Ports are other ports the role listens on (metrics, API), by name.
	Ports map[string]int
	// DataDir is where the role keeps its state (free disk).
	DataDir string
	// Version is this build's version_as_int.
	Version uint32
	// MinStake is a validator's required stake (1,024 τ).
	MinStake subnet.Balance
	// APIListen is the allocation API's address and TLS whether it serves
	// HTTPS; APIStore its api.db and TokenFile a file holding an admin
	// token ("" when none is named).
	APIListen string
	TLS       bool
	APIStore  string
	TokenFile string
}

// check is one named check and the roles it applies to.
type check struct {
	name  string
	roles string // space-separated
	run   func(ctx context.Context, c Config, p Probes) Result
}

// Run runs every check of cfg.Role in order.
func Run(ctx context.Context, cfg Config, p Probes) Report {
	r := Report{Role: cfg.Role, At: p.Now().UTC()}
	for _, ch := range checks {
		if !strings.Contains(" "+ch.roles+" ", " "+cfg.Role+" ") {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res := ch.run(cctx, cfg, p)
		cancel()
		res.Check = ch.name
		if res.Status == Pass {
			res.Remedy = ""
		}
		r.Results = append(r.Results, res)
	}
	return r
}

// WriteText writes the report for a terminal: one line per check, then
// the meaning and remedy of every check that did not pass.
func (r Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "nicompute doctor --role %s\n\n", r.Role)
	for _, x := range r.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.ToUpper(string(x.Status)), x.Check, x.Found)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, x := range r.Results {
		if x.Status == Pass {
			continue
		}
		fmt.Fprintf(w, "\n%s — %s\n  meaning: %s\n", strings.ToUpper(string(x.Status)), x.Check, x.Meaning)
		if x.Remedy != "" {
			fmt.Fprintf(w, "  remedy:  %s\n", x.Remedy)
		}
	}
	c := r.Counts()
	_, err := fmt.Fprintf(w, "\n%d passed, %d warning(s), %d failed\n", c[Pass], c[Warn], c[Fail])
	return err
}

// WriteJSON writes the report as one JSON object.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
