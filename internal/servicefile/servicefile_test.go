package servicefile

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestSystemd(t *testing.T) {
	unit, err := Systemd(Spec{Role: "miner", Binary: "/usr/local/bin/nicompute", User: "nicompute",
		Args: []string{"--netuid", "27", "--wallet.name", "my wallet", "--miner.images", `a"b`, "--x", "100%", "--y", "$HOME", "--z", `c:\d`}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Type=notify\n", "WatchdogSec=120\n", "Restart=always\n", "User=nicompute\n", "After=network-online.target docker.service\n",
		`ExecStart=/usr/local/bin/nicompute miner --netuid 27 --wallet.name "my wallet" --miner.images "a\"b" --x 100%% --y $$HOME --z "c:\\d"` + "\n",
		"WantedBy=multi-user.target\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	v, _ := Systemd(Spec{Role: "validator", Binary: "/opt/nicompute"})
	if strings.Contains(v, "docker") || strings.Contains(v, "User=") {
		t.Errorf("validator unit:\n%s", v)
	}
	for _, bad := range []Spec{
		{Role: "miner", Binary: "nicompute"},
		{Role: "Miner!", Binary: "/b"},
		{Role: "miner", Binary: "/b", User: "root; rm"},
		{Role: "miner", Binary: "/b", Args: []string{"a\nExecStartPre=/bin/sh"}},
		{Role: "miner", Binary: "/b", Name: "../x"},
	} {
		if _, err := Systemd(bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

// TestSystemdAnalyzeVerify checks a generated unit with systemd's own
// verifier, where the machine has it.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "nicompute")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"miner", "validator", "api"} {
		unit, err := Systemd(Spec{Role: role, Binary: bin, Args: []string{"--netuid", "27", "--wallet.name", "a b", "--logging.debug"}})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "nicompute-"+role+".service")
		if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		// verify exits 0 on directives it ignores but names the unit's
		// file and line for each: any such line fails the test.
		out, err := exec.Command(sa, "verify", "--man=no", p).CombinedOutput()
		var problems []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.Contains(l, filepath.Base(p)) {
				problems = append(problems, l)
			}
		}
		if len(problems) > 0 || err != nil {
			t.Errorf("systemd-analyze verify %s: %v\n%s", role, err, out)
		}
	}
}

func TestPM2(t *testing.T) {
	js, err := PM2(Spec{Role: "validator", Binary: "/usr/local/bin/nicompute", Args: []string{"--netuid", "27", "--wallet.name", `x"y`}})
	if err != nil {
		t.Fatal(err)
	}
	body := strings.TrimSuffix(strings.TrimSpace(js[strings.Index(js, "module.exports = ")+len("module.exports = "):]), ";")
	var eco struct {
		Apps []struct {
			Name        string   `json:"name"`
			Script      string   `json:"script"`
			Args        []string `json:"args"`
			Interpreter string   `json:"interpreter"`
			Autorestart bool     `json:"autorestart"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(body), &eco); err != nil {
		t.Fatalf("ecosystem is not a JSON object literal: %v\n%s", err, js)
	}
	a := eco.Apps[0]
	if a.Name != "nicompute-validator" || a.Script != "/usr/local/bin/nicompute" || a.Interpreter != "none" || !a.Autorestart ||
		strings.Join(a.Args, "|") != `validator|--netuid|27|--wallet.name|x"y` {
		t.Fatalf("app %+v", a)
	}
	if node, err := exec.LookPath("node"); err == nil {
		p := filepath.Join(t.TempDir(), "eco.config.js")
		os.WriteFile(p, []byte(js), 0o644)
		if out, err := exec.Command(node, "-e", "const e=require(process.argv[1]);if(e.apps[0].args[4]!=='x\"y')process.exit(1)", p).CombinedOutput(); err != nil {
			t.Fatalf("node: %v %s", err, out)
		}
	}
}
