// Package servicefile writes the files that run a nicompute daemon under
// a service manager: a systemd unit (Type=notify, a watchdog, a restart
// policy) and a pm2 ecosystem file, each carrying the daemon's command
// line exactly as given.
package servicefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Spec describes one daemon.
type Spec struct {
	// Role is the subcommand ("miner", "validator", "chain", "api").
	Role string
	// Binary is the absolute path of the nicompute binary.
	Binary string
	// Args are the role's flags, passed through unchanged.
	Args []string
	// User runs the service (systemd; default root).
	User string
	// Name is the service's name (default nicompute-ROLE).
	Name string
	// Watchdog is the period within which the daemon must ping systemd
	// (default 2 min; it pings every half period).
	Watchdog time.Duration
	// StopTimeout bounds a clean stop (default 3 min: a validator
	// deallocates its running tests first).
	StopTimeout time.Duration
}

var (
	roleRE = regexp.MustCompile(`^[a-z][a-z-]{0,31}$`)
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$`)
	userRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}\$?$`)
)

func (s *Spec) check() error {
	if !roleRE.MatchString(s.Role) {
		return fmt.Errorf("role %q", s.Role)
	}
	if s.Name == "" {
		s.Name = "nicompute-" + s.Role
	}
	if !nameRE.MatchString(s.Name) {
		return fmt.Errorf("service name %q: letters, digits and _.@- only", s.Name)
	}
	if !filepath.IsAbs(s.Binary) {
		return fmt.Errorf("binary %q must be an absolute path", s.Binary)
	}
	if s.User != "" && !userRE.MatchString(s.User) {
		return fmt.Errorf("user %q is not a user name", s.User)
	}
	for _, a := range append([]string{s.Binary}, s.Args...) {
		if strings.ContainsAny(a, "\x00\n\r") {
			return errors.New("arguments must not contain NUL or line breaks")
		}
	}
	if s.Watchdog <= 0 {
		s.Watchdog = 2 * time.Minute
	}
	if s.StopTimeout <= 0 {
		s.StopTimeout = 3 * time.Minute
	}
	return nil
}

// Systemd returns the unit file of s.
func Systemd(s Spec) (string, error) {
	if err := s.check(); err != nil {
		return "", fmt.Errorf("systemd unit: %w", err)
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by `nicompute service systemd`. Install it as /etc/systemd/system/%s.service, then:", s.Name)
	w("#   systemctl daemon-reload && systemctl enable --now %s", s.Name)
	w("[Unit]")
	w("Description=nicompute %s (NI Compute, Bittensor subnet 27)", s.Role)
	if s.Role == "miner" {
		// Leases are Docker containers: start after the engine. They keep
		// running when the miner stops, so the miner does not bind to it.
		w("After=network-online.target docker.service")
		w("Wants=network-online.target docker.service")
	} else {
		w("After=network-online.target")
		w("Wants=network-online.target")
	}
	w("")
	w("[Service]")
	w("Type=notify")
	w("NotifyAccess=main")
	w("ExecStart=%s", execLine(append([]string{s.Binary, s.Role}, s.Args...)))
	w("Restart=always")
	w("RestartSec=10")
	w("WatchdogSec=%d", int(s.Watchdog/time.Second))
	w("TimeoutStartSec=300")
	w("TimeoutStopSec=%d", int(s.StopTimeout/time.Second))
	// SIGTERM to the daemon only; lease containers belong to Docker.
	w("KillMode=mixed")
	if s.User != "" {
		w("User=%s", s.User)
	}
	w("NoNewPrivileges=yes")
	w("LimitNOFILE=65536")
	w("")
	w("[Install]")
	w("WantedBy=multi-user.target")
	return b.String(), nil
}

// execLine quotes each word for systemd's ExecStart: words with spaces,
// quotes or backslashes are double-quoted with \" and \\ escaped, and %
// and $ are doubled so that systemd expands neither specifiers nor
// variables.
func execLine(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		w = strings.NewReplacer("%", "%%", "$", "$$").Replace(w)
		if w == "" || strings.ContainsAny(w, " \t\"'\\;") {
			w = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(w) + `"`
		}
		out[i] = w
	}
	return strings.Join(out, " ")
}

// PM2 returns a pm2 ecosystem file (ecosystem.config.js) for s: pm2 runs
// the binary directly (no interpreter) and restarts it when it exits.
func PM2(s Spec) (string, error) {
	if err := s.check(); err != nil {
		return "", fmt.Errorf("pm2 ecosystem: %w", err)
	}
	app := map[string]any{
		"name":          s.Name,
		"script":        s.Binary,
		"args":          append([]string{s.Role}, s.Args...),
		"interpreter":   "none",
		"autorestart":   true,
		"restart_delay": 10000,
		"kill_timeout":  s.StopTimeout.Milliseconds(),
		"min_uptime":    60000,
		"max_restarts":  50,
	}
	js, err := json.MarshalIndent(map[string]any{"apps": []any{app}}, "", "  ")
	if err != nil {
		return "", err
	}
	return "// Written by `nicompute service pm2`. Start it with: pm2 start " + s.Name + ".config.js && pm2 save\n" +
		"module.exports = " + string(js) + ";\n", nil
}
