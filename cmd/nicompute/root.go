package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/nicompute/nicompute/internal/version"
)

// Stdio are the streams a command reads and writes.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
}

// app is the state shared by all subcommands of one invocation. Nothing
// here is global: tests and devnet run many invocations in one process.
type app struct {
	Stdio
	configPath string
	logDebug   bool
	logTrace   bool
	logFormat  string
	log        *slog.Logger
	// chainObserve, when set, receives every chain call of the clients
	// dialled afterwards (the daemon's metrics).
	chainObserve func(method string, d time.Duration, err error)
	// restart replaces the process after an update (default: re-execute,
	// or exit for the service manager); tests replace it.
	restart func(exe string) error
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Run executes the nicompute command line args and returns the exit code:
// 0 on success, 1 when the command failed, 2 for usage errors.
func Run(ctx context.Context, args []string, stdio Stdio) int {
	return (&app{Stdio: stdio}).run(ctx, args)
}

// run executes args with the app's streams and hooks.
func (a *app) run(ctx context.Context, args []string) int {
	stdio := a.Stdio
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stdio.Err, "error: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// cobra's own errors for a mistyped subcommand and missing required
	// flags, which no hook sees.
	if msg := err.Error(); strings.HasPrefix(msg, "unknown command ") || strings.HasPrefix(msg, "required flag(s) ") {
		return 2
	}
	return 1
}

// usageErr formats a command-line mistake (exit code 2).
func usageErr(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// usageError marks err as a command-line mistake (exit code 2).
func usageError(err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return &exitError{code: 2, err: err}
}

// markUsageErrors makes flag and argument-count errors of cmd and its
// subcommands exit with code 2, so a failing command is never mistaken for a
// usage mistake by the text of its message. A group of commands (one that
// only holds subcommands) prints its help when run alone and refuses an
// unknown subcommand: cobra would print the help and exit 0 for
// `nicompute wallet lst`.
func markUsageErrors(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	if cmd.HasSubCommands() && cmd.Run == nil && cmd.RunE == nil {
		cmd.Args = unknownSubcommand
		cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	}
	if args := cmd.Args; args != nil {
		cmd.Args = func(c *cobra.Command, a []string) error { return usageError(args(c, a)) }
	}
	for _, c := range cmd.Commands() {
		markUsageErrors(c)
	}
}

// unknownSubcommand refuses any argument of a group of commands: it can
// only be a mistyped subcommand.
func unknownSubcommand(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2
	}
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf("; did you mean %q?", s[0])
	}
	return usageErr("%s (see %s --help)", msg, c.CommandPath())
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "nicompute",
		Short:         "NI Compute GPU market: miner, validator, renter tools and a development subnet",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.applyConfig(cmd); err != nil {
				return &exitError{code: 2, err: err}
			}
			a.setupLogging()
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", "", "YAML config file; keys are flag names (nested or dotted) of any nicompute command, each command takes its own; flags and NICOMPUTE_* environment variables override it")
	pf.BoolVar(&a.logDebug, "logging.debug", false, "log at debug level")
	pf.BoolVar(&a.logTrace, "logging.trace", false, "log at trace level (more than debug)")
	pf.StringVar(&a.logFormat, "logging.format", "text", "log format: text or json")

	walletCmd := newWalletCmd(a)
	walletCmd.AddCommand(newFaucetCmd(a), newWalletBalanceCmd(a))
	root.AddCommand(
		newVersionCmd(a),
		walletCmd,
		newChainCmd(a),
		newSubnetCmd(a),
		newStakeCmd(a),
		newWeightsCmd(a),
		newSSHDCmd(a),
		newPoGCmd(a),
		newDevnetCmd(a),
		newMinerCmd(a), newAllocateCmd(a), newDeallocateCmd(a), newAllocationCmd(a),
		newValidatorCmd(a),
		newServiceCmd(a), newDoctorCmd(a), newReleaseCmd(a),
		newAPICmd(a), newRentCmd(a),
	)
	markUsageErrors(root)
	return root
}

// envName is the environment variable that overrides flag name:
// "wallet.name" → NICOMPUTE_WALLET_NAME.
func envName(flag string) string {
	r := strings.NewReplacer(".", "_", "-", "_")
	return "NICOMPUTE_" + strings.ToUpper(r.Replace(flag))
}

// applyConfig fills every flag the user did not set on the command line,
// first from its NICOMPUTE_* environment variable, then from the YAML config
// file. Precedence: flag > environment > config file > default. A flag set
// this way counts as given, so required flags (--netuid) may come from
// either. One file may serve every command: keys naming another command's
// flags are ignored, keys that no command knows are refused (a typo).
func (a *app) applyConfig(cmd *cobra.Command) error {
	path := a.configPath
	if path == "" {
		path = os.Getenv(envName("config"))
	}
	var fileVals map[string]string
	if path != "" {
		var err error
		if fileVals, err = loadConfigFile(path); err != nil {
			return err
		}
	}
	var firstErr error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || firstErr != nil || f.Name == "help" {
			return
		}
		src, val, ok := "", "", false
		if v, set := os.LookupEnv(envName(f.Name)); set {
			src, val, ok = "environment variable "+envName(f.Name), v, true
		} else if v, set := fileVals[f.Name]; set {
			src, val, ok = "config file "+path, v, true
		}
		if !ok {
			return
		}
		if err := setFlag(f, val); err != nil {
			firstErr = fmt.Errorf("%s: %s: %w", src, f.Name, err)
			return
		}
		f.Changed = true
	})
	if firstErr != nil {
		return firstErr
	}
	if len(fileVals) == 0 {
		return nil
	}
	known := flagNames(cmd.Root())
	var unknown []string
	for k := range fileVals {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	msg := fmt.Sprintf("config file %s: unknown key %q: no nicompute command has a flag of that name", path, unknown[0])
	if near := nearest(unknown[0], known); near != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", near)
	}
	return errors.New(msg)
}

// flagNames returns the flag names of every command under root.
func flagNames(root *cobra.Command) map[string]bool {
	names := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		add := func(f *pflag.Flag) { names[f.Name] = true }
		c.Flags().VisitAll(add)
		c.PersistentFlags().VisitAll(add)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	delete(names, "help")
	return names
}

// nearest returns the name in names closest to key, if it is within two
// edits.
func nearest(key string, names map[string]bool) string {
	best, bestD := "", 3
	for n := range names {
		if d := editDistance(key, n); d < bestD || (d == bestD && n < best) {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func setFlag(f *pflag.Flag, val string) error {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return sv.Replace(splitList(val))
	}
	return f.Value.Set(val)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// loadConfigFile reads a YAML mapping and flattens nested keys with dots, so
// `wallet: {name: x}` and `wallet.name: x` both set --wallet.name. Lists
// become comma-separated values.
func loadConfigFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	out := map[string]string{}
	if len(root.Content) == 0 {
		return out, nil
	}
	if err := flatten("", root.Content[0], out); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return out, nil
}

func flatten(prefix string, n *yaml.Node, out map[string]string) error {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if prefix != "" {
				k = prefix + "." + k
			}
			if err := flatten(k, n.Content[i+1], out); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		var parts []string
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: %s: lists may hold only scalars", c.Line, prefix)
			}
			parts = append(parts, c.Value)
		}
		out[prefix] = strings.Join(parts, ",")
	case yaml.ScalarNode:
		if prefix == "" {
			return fmt.Errorf("line %d: expected a mapping of flag names to values", n.Line)
		}
		out[prefix] = n.Value
	case yaml.AliasNode:
		return flatten(prefix, n.Alias, out)
	default:
		return fmt.Errorf("line %d: unsupported YAML value for %s", n.Line, prefix)
	}
	return nil
}

// levelTrace is below slog.LevelDebug.
const levelTrace = slog.Level(-8)

func (a *app) setupLogging() {
	lvl := slog.LevelInfo
	if a.logDebug {
		lvl = slog.LevelDebug
	}
	if a.logTrace {
		lvl = levelTrace
	}
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: func(_ []string, at slog.Attr) slog.Attr {
		if at.Key == slog.LevelKey {
			if l, ok := at.Value.Any().(slog.Level); ok && l <= levelTrace {
				at.Value = slog.StringValue("TRACE")
			}
		}
		return at
	}}
	var h slog.Handler
	if a.logFormat == "json" {
		h = slog.NewJSONHandler(a.Err, opts)
	} else {
		h = slog.NewTextHandler(a.Err, opts)
	}
	a.log = slog.New(h)
}

// logger returns the configured logger (a discarding one before setup).
func (a *app) logger() *slog.Logger {
	if a.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.log
}

// printJSON writes v as one JSON object on stdout.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.Out)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// walletFlags are Bittensor's --wallet.* flags.
type walletFlags struct {
	path, name, hotkey string
}

func (w *walletFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&w.path, "wallet.path", defaultWalletPath, "directory holding the wallets")
	fs.StringVar(&w.name, "wallet.name", defaultWalletName, "wallet (coldkey) name")
	fs.StringVar(&w.hotkey, "wallet.hotkey", defaultHotkeyName, "hotkey name")
}

// dir returns the wallet directory with ~ expanded.
func (w *walletFlags) dir() (string, error) { return expandHome(w.path) }

func expandHome(p string) (string, error) {
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("expand %s: %w", p, err)
		}
		return filepath.Join(home, strings.TrimPrefix(p, "~")), nil
	}
	return p, nil
}

func newVersionCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			info := version.Get()
			if asJSON {
				return a.printJSON(info)
			}
			_, err := fmt.Fprintln(a.Out, info.String())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
