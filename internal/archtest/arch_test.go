package archtest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

const module = "github.com/nicompute/nicompute/"

// allowed lists, for each internal package, the internal packages it may
// import directly. Imports point down the layers: domain (subnet, market)
// at the bottom, then adapters and logic, then services (miner,
// validator, rental), then web (the HTTP face of rental), then devnet and
// cmd, which wire everything (docs/architecture.md). Services declare
// the interfaces they consume and never import an adapter; adapters never
// import services. A package missing from the table fails the test, so a
// new package must take its place in the layers on purpose.
var allowed = map[string][]string{
	"internal/subnet":   nil,
	"internal/market":   {"subnet"},
	"internal/keys":     nil,
	"internal/version":  nil,
	"internal/yuma":     nil,
	"internal/sshd":     nil,
	"internal/nictest":  {"axon", "keys", "scratch"},
	"internal/scratch":  nil,
	"internal/archtest": nil,
	"internal/tlock":    nil,

	"internal/metrics":     {"subnet", "version"},
	"internal/sdnotify":    nil,
	"internal/selfupdate":  nil,
	"internal/servicefile": nil,
	"internal/doctor":      {"subnet"},

	"internal/allocations":                   nil,
	"internal/allocator":                     {"allocations", "axon", "market", "protocol", "subnet"},
	"internal/allocator/allocatortest":       {"axon", "keys", "market", "protocol", "subnet"},
	"internal/wallet":                        {"keys", "subnet"},
	"internal/axon":                          {"keys", "subnet"},
	"internal/protocol":                      {"axon", "market", "subnet"},
	"internal/pog":                           {"market"},
	"internal/pog/cuda":                      {"pog"},
	"internal/pog/pogcmd":                    {"pog", "market"},
	"internal/sqlite":                        {"market", "subnet"},
	"internal/hostinfo":                      {"market"},
	"internal/docker":                        {"market", "sshd"},
	"internal/egress":                        nil,
	"internal/chain/local":                   {"subnet", "yuma", "sqlite", "keys", "tlock"},
	"internal/chain/subtensor":               {"subnet", "keys", "tlock"},
	"internal/weights":                       {"subnet", "tlock"},
	"internal/chain/subtensor/subtensortest": nil,

	"internal/miner":             {"axon", "market", "protocol", "subnet"},
	"internal/rental":            {"allocator", "market", "protocol", "subnet"},
	"internal/rental/rentaltest": {"allocator", "allocator/allocatortest", "axon", "keys", "market", "nictest", "rental", "sqlite", "subnet"},
	"internal/web":               {"market", "rental"},
	"internal/validator":         {"axon", "market", "pog", "protocol", "subnet", "weights"},

	"internal/dashboard": {"version"},

	"internal/devnet": {"chain/local", "keys", "market", "pog", "subnet", "wallet", "sqlite", "docker", "hostinfo", "protocol", "axon", "allocations", "scratch"},
}

type pkg struct {
	ImportPath string
	Name       string
	Doc        string
	Imports    []string
	Deps       []string
	GoFiles    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go tool not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "list", "-json", module+"...")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func TestLayers(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(p.ImportPath, module)
		if strings.HasPrefix(rel, "cmd/") {
			continue // binaries wire everything
		}
		may, ok := allowed[rel]
		if !ok {
			t.Errorf("%s has no place in the layer table of arch_test.go", rel)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"internal/") {
				continue
			}
			dep := strings.TrimPrefix(imp, module+"internal/")
			if !slices.Contains(may, dep) {
				t.Errorf("%s imports internal/%s, which its layer does not allow", rel, dep)
			}
		}
	}
}

func TestPackagesAreDocumented(t *testing.T) {
	for _, p := range listPackages(t) {
		if len(p.GoFiles) == 0 {
			continue
		}
		if p.Name == "main" {
			if !strings.HasPrefix(p.Doc, "Command ") {
				t.Errorf("%s: command doc should start with \"Command \": %q", p.ImportPath, p.Doc)
			}
			continue
		}
		if !strings.HasPrefix(p.Doc, "Package "+p.Name+" ") {
			t.Errorf("%s has no package comment starting \"Package %s\"", p.ImportPath, p.Name)
		}
	}
}

func TestTestHelpersStayOutOfBinaries(t *testing.T) {
	helpers := []string{module + "internal/nictest", module + "internal/chain/subtensor/subtensortest", module + "internal/allocator/allocatortest", module + "internal/rental/rentaltest"}
	for _, p := range listPackages(t) {
		if slices.Contains(helpers, p.ImportPath) {
			continue // test-support packages themselves
		}
		for _, d := range p.Deps {
			if slices.Contains(helpers, d) || d == "testing" {
				t.Errorf("%s links %s into non-test code", p.ImportPath, d)
			}
		}
	}
}
