//go:build linux

package sshd

import (
	"bytes"
	"os"
	"path"
	"strconv"
	"strings"
)

// account is what a session needs to know about the user it runs as.
type account struct {
	name  string
	home  string
	shell string // from /etc/passwd; may be empty or unusable
}

// lookupAccount finds uid in passwd (the contents of /etc/passwd). Images
// built FROM scratch have no passwd file; root then gets home /root and
// any other uid home "/".
func lookupAccount(passwd []byte, uid int, fallbackName string) account {
	if a, ok := parsePasswd(passwd, uid); ok {
		return a
	}
	a := account{name: fallbackName, home: "/"}
	if uid == 0 {
		a.name, a.home = "root", "/root"
	}
	return a
}

// parsePasswd returns the first passwd(5) entry with the given uid.
func parsePasswd(passwd []byte, uid int) (account, bool) {
	want := strconv.Itoa(uid)
	for _, line := range bytes.Split(passwd, []byte("\n")) {
		f := strings.Split(strings.TrimSpace(string(line)), ":")
		if len(f) != 7 || f[2] != want || f[0] == "" || strings.HasPrefix(f[0], "#") {
			continue
		}
		a := account{name: f[0], home: f[5], shell: f[6]}
		if !path.IsAbs(a.home) {
			a.home = "/"
		}
		return a, true
	}
	return account{}, false
}

// shellCmd is how to start a shell: the program to execute and its argv[0].
type shellCmd struct {
	path string
	name string // argv[0] without the login "-" prefix
}

// fallbackShells are tried when the account's own shell is missing or
// refuses logins. Busybox picks its applet from argv[0], so "sh" as argv[0]
// of /bin/busybox starts its shell.
func fallbackShells() []shellCmd {
	return []shellCmd{
		{path: "/bin/sh", name: "sh"},
		{path: "/bin/busybox", name: "sh"},
	}
}

// resolveShell picks the account's shell when it is an absolute path to an
// executable that is not a login refuser (nologin, false), otherwise the
// first fallback that exists. ok is false when there is no shell at all.
func resolveShell(loginShell string, executable func(string) bool) (shellCmd, bool) {
	if path.IsAbs(loginShell) {
		base := path.Base(loginShell)
		if base != "nologin" && base != "false" && executable(loginShell) {
			return shellCmd{path: loginShell, name: base}, true
		}
	}
	for _, s := range fallbackShells() {
		if executable(s.path) {
			return s, true
		}
	}
	return shellCmd{}, false
}

// isExecutable reports whether p is a regular file with an execute bit.
func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// validEnvName reports whether name is a portable environment variable
// name: [A-Za-z_][A-Za-z0-9_]*.
func validEnvName(name string) bool {
	if name == "" || len(name) > 256 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// acceptClientEnv reports whether a client "env" request may set name to
// value. Any portable name is accepted, including LD_PRELOAD and PATH: the
// session runs with the same identity the client already has through its
// shell, so the variable grants nothing an `export` would not. The SSH_*
// variables the server asserts about the connection cannot be overridden,
// and NUL cannot be passed through execve.
func acceptClientEnv(name, value string) bool {
	return validEnvName(name) && !strings.HasPrefix(name, "SSH_") && strings.IndexByte(value, 0) < 0
}

// mergeEnv returns base with each of the KEY=value pairs in over replacing
// an earlier value of KEY or appended in order.
func mergeEnv(base []string, over ...string) []string {
	out := make([]string, 0, len(base)+len(over))
	idx := make(map[string]int, len(base)+len(over))
	for _, kv := range append(append([]string(nil), base...), over...) {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		if i, seen := idx[k]; seen {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// envValue returns the value of key in env.
func envValue(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}
