package egress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// callTimeout bounds one iptables command.
const callTimeout = 30 * time.Second

// tables runs one family's iptables and iptables-restore binaries, always
// with an argument vector, never through a shell.
type tables struct {
	fam     family
	bin     string // iptables or ip6tables
	restore string // iptables-restore or ip6tables-restore
}

// findTables locates name and name-restore: in PATH, then in /usr/sbin and
// /sbin, which a service's PATH may lack.
func findTables(fam family, name string) (*tables, error) {
	bin, err := lookBinary(name)
	if err != nil {
		return nil, err
	}
	restore, err := lookBinary(name + "-restore")
	if err != nil {
		return nil, err
	}
	return &tables{fam: fam, bin: bin, restore: restore}, nil
}

func lookBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (install the iptables package)", name)
}

// errAbsent is returned by check when the rule or chain does not exist.
var errAbsent = errors.New("absent")

// run runs the family's iptables with args (after -w, which waits for the
// legacy backend's lock) and returns its standard output.
func (t *tables) run(ctx context.Context, args ...string) (string, error) {
	return t.exec(ctx, t.bin, nil, append([]string{"-w"}, args...)...)
}

// check runs a query (-C, -S) whose exit status 1 means "does not exist".
func (t *tables) check(ctx context.Context, args ...string) (string, error) {
	out, err := t.run(ctx, args...)
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return "", errAbsent
	}
	return out, err
}

// restoreNoFlush feeds script to iptables-restore --noflush: the chains it
// declares are created or replaced in one transaction, others untouched.
func (t *tables) restoreNoFlush(ctx context.Context, script string) error {
	_, err := t.exec(ctx, t.restore, []byte(script), "-w", "--noflush")
	return err
}

func (t *tables) exec(ctx context.Context, bin string, stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stripWarnings(errb.String()))
		if len(msg) > 300 {
			msg = msg[:300]
		}
		return "", fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, msg)
	}
	return out.String(), nil
}

// stripWarnings drops the "# Warning: iptables-legacy tables present"
// lines iptables-nft adds to its output.
func stripWarnings(s string) string {
	var keep []string
	for l := range strings.Lines(s) {
		if !strings.HasPrefix(l, "# Warning:") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "")
}

// backend returns the version line of the family's iptables, which names
// its backend ("iptables v1.8.9 (nf_tables)").
func (t *tables) backend(ctx context.Context) (string, error) {
	out, err := t.exec(ctx, t.bin, nil, "--version")
	return strings.TrimSpace(out), err
}

// chainExists reports whether table has chain.
func (t *tables) chainExists(ctx context.Context, table, chain string) (bool, error) {
	_, err := t.check(ctx, "-t", table, "-S", chain)
	switch {
	case errors.Is(err, errAbsent):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// ensureJump inserts, at the top of table's hook, a jump from bridge's
// packets to chain unless one is there, and reports whether it inserted
// one.
func (t *tables) ensureJump(ctx context.Context, table, hook, bridge, chain string) (bool, error) {
	rule := []string{"-i", bridge, "-j", chain}
	_, err := t.check(ctx, append([]string{"-t", table, "-C", hook}, rule...)...)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, errAbsent) {
		return false, err
	}
	if _, err = t.run(ctx, append([]string{"-t", table, "-I", hook, "1"}, rule...)...); err != nil {
		return false, err
	}
	return true, nil
}

// deleteJumps deletes every jump from bridge's packets in hook to chain.
// Jumps (or the chain, and with it every jump to it) that someone else
// deletes in the meantime — an operator, a process not sharing our lock —
// are not an error.
func (t *tables) deleteJumps(ctx context.Context, table, hook, bridge, chain string) error {
	rule := []string{"-i", bridge, "-j", chain}
	gone := func() bool {
		_, err := t.check(ctx, append([]string{"-t", table, "-C", hook}, rule...)...)
		switch {
		case err == nil:
			return false
		case errors.Is(err, errAbsent):
			return true
		}
		ok, cerr := t.chainExists(ctx, table, chain)
		return cerr == nil && !ok
	}
	for range 16 { // a rule inserted several times by hand is deleted too
		if gone() {
			return nil
		}
		if _, err := t.run(ctx, append([]string{"-t", table, "-D", hook}, rule...)...); err != nil && !gone() {
			return err
		}
	}
	return fmt.Errorf("%s: jumps from %s to %s keep coming back", hook, bridge, chain)
}

// deleteChain flushes and deletes table's chain if it exists. It is this
// package's own chain: flushing it touches nothing else. A chain deleted
// by someone else in the meantime is not an error.
func (t *tables) deleteChain(ctx context.Context, table, chain string) error {
	ok, err := t.chainExists(ctx, table, chain)
	if err != nil || !ok {
		return err
	}
	for _, op := range []string{"-F", "-X"} {
		if _, err := t.run(ctx, "-t", table, op, chain); err != nil {
			if ok, cerr := t.chainExists(ctx, table, chain); cerr == nil && !ok {
				return nil
			}
			return err
		}
	}
	return nil
}

// ownChains lists the chains of table this package created.
func (t *tables) ownChains(ctx context.Context, table string) ([]string, error) {
	out, err := t.run(ctx, "-t", table, "-S")
	if err != nil {
		return nil, err
	}
	var chains []string
	for l := range strings.Lines(out) {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == "-N" && strings.HasPrefix(f[1], chainPrefix) {
			chains = append(chains, f[1])
		}
	}
	return chains, nil
}

// hasTable reports whether the kernel offers table with its built-in
// chain hook (iptable_security, iptable_raw; every common distribution
// kernel has both). Only iptables' own answer that the table does not
// exist means no; any other failure is an error, so that a passing
// problem never installs the filter without a chain.
func (t *tables) hasTable(ctx context.Context, table, hook string) (bool, error) {
	_, err := t.run(ctx, "-t", table, "-S", hook)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode() == 3 && strings.Contains(strings.ToLower(err.Error()), "does not exist"):
		return false, nil
	}
	return false, fmt.Errorf("is there a %s table: %w", table, err)
}
