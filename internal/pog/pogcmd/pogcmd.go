// Package pogcmd is the Proof-of-GPU worker's command line (info, compute,
// bench), shared by `nicompute pog` (cpu and sim backends, static binary)
// and the separate nicompute-pog binary, which adds the CUDA backend. The
// CUDA backend loads libcuda at run time with purego, which makes a binary
// dynamically linked; keeping it out of this package keeps nicompute static.
package pogcmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/pog"
)

// Backend is a named way to build a pog.Backend from the flags.
type Backend struct {
	Name  string
	Short string
	// AddFlags, when set, adds the backend's own flags to each command;
	// New reads what they were set to.
	AddFlags func(fs *pflag.FlagSet)
	New      func(f *Flags) (pog.Backend, error)
}

// Flags are the values of the backend flags of a command.
type Flags struct {
	Backend      string
	Simulate     string
	GPUTable     string
	SimTimeScale float64
	CPUDevices   int
	Workers      int
}

// Devnet simulation. A devnet miner decides which GPUs its lease
// containers pretend to have and says so in SimulateFile (or a test harness
// in SimulateEnv); a worker started without --backend or --simulate then
// runs the sim backend with that spec ("MODEL" or "COUNTxMODEL"). The
// validator uploads the same worker everywhere and never tells it what to
// claim; the sim backend's hello says it is simulated, which validators
// refuse outside devnet, so the file cannot make a real miner's result
// better, only void.
const (
	SimulateFile = "/etc/nicompute/pog-simulate"
	SimulateEnv  = "NICOMPUTE_POG_SIMULATE"
	// maxSimulateSpec bounds what is read from the file or variable.
	maxSimulateSpec = 256
)

// Options configure the command.
type Options struct {
	In       io.Reader
	Out, Err io.Writer
	// Backends are offered in addition to cpu and sim, first the default.
	Backends []Backend
	// Log returns the logger (called when a command runs); nil discards.
	Log func() *slog.Logger
	// SimulateFile overrides the path of the devnet simulation file
	// (default SimulateFile; "-" reads none).
	SimulateFile string
	// Getenv reads SimulateEnv (default os.Getenv).
	Getenv func(string) string
}

// devnetSimulate returns the simulation spec the environment sets: the
// SimulateEnv variable, else the first line of the simulation file; "" when
// neither is set.
func (o Options) devnetSimulate() (string, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if v := strings.TrimSpace(getenv(SimulateEnv)); v != "" {
		if len(v) > maxSimulateSpec {
			return "", fmt.Errorf("%s is longer than %d bytes", SimulateEnv, maxSimulateSpec)
		}
		return v, nil
	}
	path := o.SimulateFile
	if path == "" {
		path = SimulateFile
	}
	if path == "-" {
		return "", nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("devnet simulation file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSimulateSpec+1))
	if err != nil {
		return "", fmt.Errorf("devnet simulation file %s: %w", path, err)
	}
	if len(b) > maxSimulateSpec {
		return "", fmt.Errorf("devnet simulation file %s is longer than %d bytes", path, maxSimulateSpec)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), nil
}

// builtin returns the backends every build offers: cpu and sim.
func builtin() []Backend {
	return []Backend{{
		Name: "cpu", Short: "pure Go on the CPU (tests, small n)",
		New: func(f *Flags) (pog.Backend, error) {
			return pog.CPU{Devices: f.CPUDevices, Workers: f.Workers}, nil
		},
	}, {
		Name: "sim", Short: "devnet only: pretend to be --simulate MODEL; validators refuse it elsewhere",
		New: func(f *Flags) (pog.Backend, error) {
			if f.Simulate == "" {
				return nil, fmt.Errorf("the sim backend needs --simulate MODEL")
			}
			t, err := market.LoadGPUTable(f.GPUTable)
			if err != nil {
				return nil, err
			}
			m, count, err := pog.ParseSimulate(t, f.Simulate)
			if err != nil {
				return nil, err
			}
			return pog.Sim{Model: m, Count: count, TimeScale: f.SimTimeScale, Workers: f.Workers}, nil
		},
	}}
}

// New returns the pog command named use ("pog" under nicompute, or the root
// of nicompute-pog) with info, compute and bench subcommands.
func New(use string, o Options) *cobra.Command {
	backends := append(append([]Backend(nil), o.Backends...), builtin()...)
	names := make([]string, len(backends))
	var help strings.Builder
	for i, b := range backends {
		names[i] = b.Name
		fmt.Fprintf(&help, "\n  %-5s %s", b.Name, b.Short)
	}
	log := func() *slog.Logger {
		if o.Log != nil {
			if l := o.Log(); l != nil {
				return l
			}
		}
		return slog.New(slog.DiscardHandler)
	}
	open := func(f *Flags) (pog.Backend, error) {
		name := f.Backend
		if name == "" && f.Simulate == "" {
			spec, err := o.devnetSimulate()
			if err != nil {
				return nil, err
			}
			if spec != "" {
				log().Debug("devnet simulation set by the environment", "simulate", spec)
				f.Simulate = spec
			}
		}
		if f.Simulate != "" {
			if name != "" && name != "sim" {
				return nil, fmt.Errorf("--simulate needs the sim backend, not %q", name)
			}
			name = "sim"
		}
		if name == "" {
			name = backends[0].Name
		}
		i := slices.IndexFunc(backends, func(b Backend) bool { return b.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("unknown backend %q (have %s)", name, strings.Join(names, ", "))
		}
		return backends[i].New(f)
	}
	register := func(cmd *cobra.Command, f *Flags) {
		fs := cmd.Flags()
		fs.StringVar(&f.Backend, "backend", "", "backend: "+strings.Join(names, ", ")+" (default "+names[0]+")")
		fs.StringVar(&f.Simulate, "simulate", "", `devnet only: pretend to be MODEL or COUNTxMODEL ("2xNVIDIA H100") from the GPU table`)
		fs.StringVar(&f.GPUTable, "gpu-table", "", "GPU reference table YAML (default: the built-in table)")
		fs.Float64Var(&f.SimTimeScale, "sim-time-scale", pog.DefaultSimTimeScale, "sim backend: fraction of the model's time to take when the validator sends none")
		fs.IntVar(&f.CPUDevices, "cpu-devices", 1, "cpu backend: number of stand-in devices")
		fs.IntVar(&f.Workers, "workers", 0, "cpu and sim backends: goroutines per multiplication (default: all CPUs)")
		for _, b := range backends {
			if b.AddFlags != nil {
				b.AddFlags(fs)
			}
		}
	}

	root := &cobra.Command{
		Use:   use,
		Short: "Proof-of-GPU worker",
		Long: `Proof-of-GPU worker, run by validators inside a rented container over SSH.

Backends:` + help.String() + `

Without --backend or --simulate, a devnet simulation set by the miner (` + SimulateEnv + `,
or the first line of ` + SimulateFile + `) selects the sim backend.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}

	var infoFlags Flags
	info := &cobra.Command{
		Use:   "info",
		Short: "Print the devices this worker would prove (JSON)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := open(&infoFlags)
			if err != nil {
				return err
			}
			in, err := pog.Describe(cmd.Context(), b)
			if err != nil {
				return err
			}
			return printJSON(o.Out, in)
		},
	}
	register(info, &infoFlags)

	var computeFlags Flags
	compute := &cobra.Command{
		Use:   "compute",
		Short: "Serve one Proof-of-GPU session on stdin/stdout (line-delimited JSON)",
		Long: `Serve one Proof-of-GPU session on stdin/stdout: send a hello describing the
devices, then answer compute requests with Merkle roots and challenges with
proofs, keeping C in device memory in between, until stdin ends.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := open(&computeFlags)
			if err != nil {
				return err
			}
			log().Debug("pog session start", "backend", b.Name())
			err = pog.Serve(cmd.Context(), b, o.In, o.Out)
			log().Debug("pog session end", "err", err)
			return err
		},
	}
	register(compute, &computeFlags)

	var (
		benchFlags Flags
		benchN     int
		verify     int
		asJSON     bool
	)
	bench := &cobra.Command{
		Use:   "bench",
		Short: "Time one computation per device: generate, multiply, hash, tree",
		Long: `Time one computation at --n on every device and print the worker's phase
times and the multiplication rate (the GPU table's GPU_TFLOPS_FP16 is this
rate). With --verify K, prove K elements per device and compare them with
the exact values, printing the largest and rms error next to the tolerance.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := open(&benchFlags)
			if err != nil {
				return err
			}
			res, err := pog.Bench(cmd.Context(), b, pog.BenchOptions{N: benchN, Verify: verify})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(o.Out, res)
			}
			return printBench(o.Out, res, verify > 0)
		},
	}
	register(bench, &benchFlags)
	bench.Flags().IntVar(&benchN, "n", 1024, "matrix size, a multiple of 256")
	bench.Flags().IntVar(&verify, "verify", 0, "elements per device to prove and check")
	bench.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	root.AddCommand(info, compute, bench)
	return root
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printBench(w io.Writer, res []pog.BenchResult, verified bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "GPU\tNAME\tN\tGENERATE ms\tMULTIPLY ms\tHASH ms\tTREE ms\tTFLOPS\t"
	if verified {
		head += "CHECKED\tFAILED\tMAX ERR\tRMS ERR\tTOLERANCE\t"
	}
	fmt.Fprintln(tw, head)
	for _, r := range res {
		if r.Err != "" {
			fmt.Fprintf(tw, "%d\t%s\terror: %s\t\n", r.GPU.Index, r.GPU.Name, r.Err)
			continue
		}
		t := r.Timings
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.4g\t", r.GPU.Index, r.GPU.Name, r.N, t.GenerateMS, t.MultiplyMS, t.HashMS, t.TreeMS, r.TFLOPS)
		if verified {
			fmt.Fprintf(tw, "%d\t%d\t%.3g\t%.3g\t%.3g\t", r.Checked, r.Failed, r.MaxError, r.RMSError, r.Tolerance)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}
