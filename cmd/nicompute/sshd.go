package main

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/sshd"
)

func newSSHDCmd(a *app) *cobra.Command {
	var (
		listen     string
		forwarding bool
		cfg        sshd.Config
	)
	cmd := &cobra.Command{
		Use:   "sshd",
		Short: "SSH server run inside rented containers",
		Long: `Run the SSH server that is the entrypoint of every rented container.

It accepts only --user (root), authenticated by a key in <dir>/authorized_keys
or, when <dir>/password exists, by password; both files are re-read at every
login, so a replaced authorized_keys applies to the next login at once. The
ed25519 host key is kept in <dir>/ssh_host_ed25519_key, created on first start.
Sessions get a shell (the passwd shell, /bin/sh or /bin/busybox sh), exec with
or without a terminal, SFTP, port forwarding (ssh -L, -D and -R, inside the
container's network namespace; -R listens on loopback only), and the
container's own environment. SIGTERM lets running sessions finish for
--shutdown-grace before hanging them up.

Only modern algorithms are offered (no SHA-1, no finite-field key exchange).
Past --max-startups unauthenticated connections, a new one takes the place of
one that made no progress for --startup-protection, so a flood of idle
connections cannot lock the renter out.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Env = sessionEnv(os.Environ())
			cfg.DisableTCPForwarding = !forwarding
			srv, err := sshd.New(cfg, a.logger())
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				srv.Close()
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			err = srv.Serve(cmd.Context(), ln)
			if cerr := srv.Close(); err == nil {
				err = cerr
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "dir", sshd.Dir, "directory holding authorized_keys, the optional password file and the host key")
	f.StringVar(&listen, "listen", ":22", "TCP address to listen on")
	f.StringVar(&cfg.User, "user", sshd.DefaultUser, "the only login name accepted; commands run as the server's own user")
	f.BoolVar(&forwarding, "allow-tcp-forwarding", true, "allow port forwarding: ssh -L and -D connect from inside the container, ssh -R listens on its loopback address")
	f.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", sshd.DefaultShutdownGrace, "how long running sessions may continue after SIGTERM")
	f.DurationVar(&cfg.LoginGraceTime, "login-grace-time", sshd.DefaultLoginGraceTime, "time allowed from connect to successful authentication")
	f.IntVar(&cfg.MaxAuthTries, "max-auth-tries", sshd.DefaultMaxAuthTries, "failed authentication attempts allowed per connection")
	f.DurationVar(&cfg.HandshakeTimeout, "handshake-timeout", sshd.DefaultHandshakeTimeout, "time allowed for the version and key exchange")
	f.IntVar(&cfg.MaxStartups, "max-startups", sshd.DefaultMaxStartups, "concurrent unauthenticated connections; past it a new one evicts the stalest of the source holding most")
	f.DurationVar(&cfg.StartupProtection, "startup-protection", sshd.DefaultStartupProtection, "how long an unauthenticated connection keeps its place after each handshake step")
	f.IntVar(&cfg.MaxSessions, "max-sessions", sshd.DefaultMaxSessions, "concurrent sessions per connection")
	cmd.AddCommand(newSHA256Cmd())
	return cmd
}

// newSHA256Cmd is the helper a validator runs in its test lease to check
// a cached Proof-of-GPU worker before running it (protocol.HashCommand).
func newSHA256Cmd() *cobra.Command {
	return &cobra.Command{
		Use:   "sha256 FILE",
		Short: "Print the SHA-256 of a file (a validator checks its cached worker with it)",
		Long: `Print the SHA-256 of FILE in lower-case hex. A validator runs it in its
test lease, from the nicompute binary every lease has, to check the copy of
its Proof-of-GPU worker in the lease's cache before running it. FILE must be
a regular file (not a link) of at most 1 GiB.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sum, err := sshd.HashFile(args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), sum)
			return err
		},
	}
}

// sessionEnv is the container's environment minus nicompute's own
// configuration variables, which are no business of the renter's shell.
func sessionEnv(environ []string) []string {
	var env []string
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "NICOMPUTE_") {
			env = append(env, kv)
		}
	}
	return env
}
