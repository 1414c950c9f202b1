package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/servicefile"
)

// serviceRoles are the daemons a service file can run: those that speak
// sd_notify (a Type=notify unit waits for READY=1).
var serviceRoles = []string{"miner", "validator", "chain", "api"}

func newServiceCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Write a systemd unit or a pm2 ecosystem file that runs a daemon",
	}
	cmd.AddCommand(newServiceFileCmd(a, "systemd", "a systemd unit (Type=notify with a watchdog, restarted always)", servicefile.Systemd),
		newServiceFileCmd(a, "pm2", "a pm2 ecosystem file (restarted when it exits)", servicefile.PM2))
	return cmd
}

func newServiceFileCmd(a *app, kind, what string, render func(servicefile.Spec) (string, error)) *cobra.Command {
	var s servicefile.Spec
	var out string
	var watchdog time.Duration
	cmd := &cobra.Command{
		Use:   kind + " --role ROLE [flags] [-- ROLE FLAGS…]",
		Short: "Write " + what,
		Long: `Write ` + what + ` that runs nicompute ROLE with the
flags after "--", exactly as given (they are checked against the role's
flags first). The daemons tell the service manager when they are ready and
stopping, ping systemd's watchdog, and restart through it after an
auto-update.

  nicompute service ` + kind + ` --role miner -- --netuid 27 --subtensor.network finney \
    --wallet.name miner --wallet.hotkey default --metrics.listen 127.0.0.1:9101`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains(serviceRoles, s.Role) {
				return usageErr("--role must be one of %v", serviceRoles)
			}
			if err := a.checkRoleFlags(s.Role, args); err != nil {
				return err
			}
			if s.Binary == "" {
				exe, err := os.Executable()
				if err == nil {
					exe, err = filepath.EvalSymlinks(exe)
				}
				if err != nil {
					return fmt.Errorf("find own binary: %w (pass --binary)", err)
				}
				s.Binary = exe
			}
			if abs, err := filepath.Abs(s.Binary); err == nil {
				s.Binary = abs
			}
			if st, err := os.Stat(s.Binary); err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
				return usageErr("--binary %s is not an executable file", s.Binary)
			}
			s.Args, s.Watchdog = args, watchdog
			text, err := render(s)
			if err != nil {
				return usageError(err)
			}
			if out == "" {
				_, err = fmt.Fprint(a.Out, text)
				return err
			}
			if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
				return fmt.Errorf("write %s: %w", out, err)
			}
			fmt.Fprintf(a.Err, "wrote %s\n", out)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&s.Role, "role", "", "daemon to run: "+fmt.Sprint(serviceRoles))
	fs.StringVar(&s.Binary, "binary", "", "nicompute binary the service runs (default: this executable)")
	fs.StringVar(&s.Name, "name", "", "service name (default nicompute-ROLE)")
	fs.StringVar(&out, "out", "", "file to write (default: standard output)")
	if kind == "systemd" {
		fs.StringVar(&s.User, "user", "", "user the service runs as (default root; a miner's user needs the docker group)")
		fs.DurationVar(&watchdog, "watchdog", 2*time.Minute, "systemd watchdog period (WatchdogSec)")
	}
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

// checkRoleFlags parses args with role's own flags, so that a unit never
// carries a flag the daemon would refuse at start.
func (a *app) checkRoleFlags(role string, args []string) error {
	root := (&app{Stdio: a.Stdio}).rootCmd()
	rc, _, err := root.Find([]string{role})
	if err != nil || rc == root {
		return usageErr("this build has no %q command", role)
	}
	if err := rc.ParseFlags(args); err != nil {
		return usageErr("%s flags: %v", role, err)
	}
	if rest := rc.Flags().Args(); len(rest) > 0 {
		return usageErr("%s takes flags only, not %q", role, rest[0])
	}
	return nil
}
