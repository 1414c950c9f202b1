package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
)

// fake is a Probes whose answers are fields.
type fake struct {
	docker    Docker
	dockerErr error
	gpus      []string
	gpuErr    error
	pf        PacketFilter
	pfErr     error
	listening map[int]bool
	ufw       UFW
	ufwErr    error
	ip        string
	chain     Chain
	chainErr  error
	free      uint64
	diskErr   error
	now       time.Time
	results   ValidatorResults
	resErr    error
	cert      Certificate
	certErr   error
	files     map[string]File
	token     Token
	tokenErr  error
}

func (f *fake) Docker(context.Context) (Docker, error)             { return f.docker, f.dockerErr }
func (f *fake) GPUs(context.Context) ([]string, error)             { return f.gpus, f.gpuErr }
func (f *fake) PacketFilter(context.Context) (PacketFilter, error) { return f.pf, f.pfErr }
func (f *fake) Listening(_ context.Context, p int) bool            { return f.listening[p] }
func (f *fake) UFW(context.Context) (UFW, error)                   { return f.ufw, f.ufwErr }
func (f *fake) OutboundIP() (string, error)                        { return f.ip, nil }
func (f *fake) Chain(context.Context) (Chain, error)               { return f.chain, f.chainErr }
func (f *fake) DiskFree(string) (uint64, uint64, error)            { return f.free, 1 << 40, f.diskErr }
func (f *fake) Now() time.Time                                     { return f.now }
func (f *fake) ValidatorResults(context.Context) (ValidatorResults, error) {
	return f.results, f.resErr
}
func (f *fake) Certificate(context.Context) (Certificate, error) { return f.cert, f.certErr }
func (f *fake) File(path string) (File, error)                   { return f.files[path], nil }
func (f *fake) Token(context.Context) (Token, error)             { return f.token, f.tokenErr }

const (
	minerHK = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
	valHK   = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
	otherHK = "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// healthy is a machine on which every check passes.
func healthy() *fake {
	return &fake{
		docker:    Docker{ServerVersion: "24.0.7", APIVersion: "1.43", StorageDriver: "overlay2", BackingFS: "xfs", DiskQuota: true, NvidiaRuntime: true},
		gpus:      []string{"NVIDIA H100 80GB HBM3"},
		pf:        PacketFilter{Backend: "iptables-nft", DockerChains: true, SecurityTable: true, RawTable: true},
		listening: map[int]bool{8091: true, 9101: true, 8903: true},
		ufw:       UFW{Installed: true, Active: true, Allowed: []string{"22/tcp", "8000:9000/tcp"}},
		ip:        "203.0.113.7",
		chain: Chain{
			Metagraph: &subnet.Metagraph{NetUID: 27, Block: 100, Neurons: []subnet.Neuron{
				{UID: 0, Hotkey: valHK, Stake: subnet.TAO(5000), ValidatorPermit: true, RegisteredAt: 1},
				{UID: 1, Hotkey: minerHK, RegisteredAt: 5, Axon: subnet.AxonInfo{IP: "203.0.113.7", Port: 8091, Version: 1002003}},
				{UID: 2, Hotkey: otherHK, RegisteredAt: 9, Axon: subnet.AxonInfo{IP: "198.51.100.1", Port: 8091}},
			}},
			Hyper: subnet.Hyperparameters{WeightsVersionKey: 1002000},
			Time:  now.Add(-time.Second), Uncertainty: 12 * time.Second,
		},
		free:    100 << 30,
		now:     now,
		results: ValidatorResults{Path: "/srv/validator/validator.db", Miners: 3, Newest: now.Add(-20 * time.Minute)},
		cert:    Certificate{Names: []string{"api.example.org"}, NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(60 * 24 * time.Hour)},
		files: map[string]File{
			"/srv/api/api.db":  {Exists: true, Mode: 0o600},
			"/srv/admin.token": {Exists: true, Mode: 0o600},
		},
		token: Token{ID: "tok_1", Name: "ops", Admin: true},
	}
}

func minerCfg() Config {
	return Config{Role: "miner", NetUID: 27, Hotkey: minerHK, AxonPort: 8091, DataDir: "/var/lib/docker", Version: 1002003, MinStake: subnet.TAO(1024)}
}

func valCfg() Config {
	return Config{Role: "validator", NetUID: 27, Hotkey: valHK, Ports: map[string]int{"metrics": 9101}, DataDir: "/srv", Version: 1002003, MinStake: subnet.TAO(1024)}
}

func apiCfg() Config {
	return Config{Role: "api", NetUID: 27, Hotkey: valHK, Ports: map[string]int{"api": 8903}, DataDir: "/srv", Version: 1002003, MinStake: subnet.TAO(1024),
		APIListen: "0.0.0.0:8903", TLS: true, APIStore: "/srv/api/api.db", TokenFile: "/srv/admin.token"}
}

func TestHealthyMachinePasses(t *testing.T) {
	for _, cfg := range []Config{minerCfg(), valCfg(), apiCfg()} {
		r := Run(context.Background(), cfg, healthy())
		if r.Failed() || r.Counts()[Warn] != 0 {
			var b bytes.Buffer
			r.WriteText(&b)
			t.Fatalf("%s:\n%s", cfg.Role, &b)
		}
		if cfg.Role == "miner" && len(r.Results) != 11 || cfg.Role == "validator" && len(r.Results) != 6 || cfg.Role == "api" && len(r.Results) != 11 {
			t.Fatalf("%s ran %d checks", cfg.Role, len(r.Results))
		}
	}
}

func TestChecks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    func() Config
		breakf func(*fake)
		check  string
		want   Status
		words  string // in found, meaning or remedy
	}{
		{"engine down", minerCfg, func(f *fake) { f.dockerErr = errors.New("dial unix /var/run/docker.sock: no such file") }, "docker engine", Fail, "systemctl enable --now docker"},
		{"old engine", minerCfg, func(f *fake) { f.docker.ServerVersion = "19.03.15" }, "docker engine", Fail, "upgrade"},
		{"no gpu", minerCfg, func(f *fake) { f.gpuErr = errors.New("nvidia-smi not installed") }, "nvidia runtime and gpus", Fail, "NVIDIA driver"},
		{"no runtime", minerCfg, func(f *fake) { f.docker.NvidiaRuntime = false }, "nvidia runtime and gpus", Fail, "nvidia-ctk runtime configure"},
		{"cdi only", minerCfg, func(f *fake) { f.docker.NvidiaRuntime, f.docker.CDI = false, true }, "nvidia runtime and gpus", Pass, "CDI"},
		{"no quota", minerCfg, func(f *fake) { f.docker.DiskQuota, f.docker.BackingFS = false, "extfs" }, "storage driver and disk quota", Warn, "pauses one past its size"},
		{"bridge netfilter off", minerCfg, func(f *fake) {
			f.docker.Warnings = []string{"WARNING: bridge-nf-call-iptables is disabled"}
		}, "packet filter (lease isolation)", Fail, "br_netfilter"},
		{"docker not managing iptables", minerCfg, func(f *fake) { f.pf.DockerChains = false }, "packet filter (lease isolation)", Fail, `"iptables": false`},
		{"no raw table", minerCfg, func(f *fake) { f.pf.RawTable = false }, "packet filter (lease isolation)", Warn, "iptable_raw"},
		{"no security table", minerCfg, func(f *fake) { f.pf.SecurityTable = false }, "packet filter (lease isolation)", Warn, "iptable_security"},
		{"filter unreadable", minerCfg, func(f *fake) { f.pfErr = errors.New("permission denied") }, "packet filter (lease isolation)", Warn, "as root"},
		{"axon not listening", minerCfg, func(f *fake) { f.listening = nil }, "ports listening", Warn, "axon 8091"},
		{"ufw blocks axon", minerCfg, func(f *fake) { f.ufw.Allowed = []string{"22/tcp", "8091/udp"} }, "firewall (ufw)", Fail, "ufw allow 8091/tcp"},
		{"ufw inactive", minerCfg, func(f *fake) { f.ufw.Active = false }, "firewall (ufw)", Pass, "inactive"},
		{"no ufw", valCfg, func(f *fake) { f.ufw = UFW{} }, "firewall (ufw)", Pass, "not installed"},
		{"chain down", minerCfg, func(f *fake) { f.chainErr = errors.New("connection refused") }, "registration and stake", Fail, "--subtensor.network"},
		{"unregistered", minerCfg, func(f *fake) { f.chain.Metagraph.Neurons = f.chain.Metagraph.Neurons[:1] }, "registration and stake", Fail, "subnet register"},
		{"low stake", valCfg, func(f *fake) { f.chain.Metagraph.Neurons[0].Stake = subnet.TAO(10) }, "registration and stake", Warn, "1024 τ"},
		{"no permit", valCfg, func(f *fake) { f.chain.Metagraph.Neurons[0].ValidatorPermit = false }, "registration and stake", Warn, "permit"},
		{"axon elsewhere", minerCfg, func(f *fake) { f.ip = "192.0.2.9" }, "axon on chain vs this machine", Fail, "validators call the address on chain"},
		{"axon not served", minerCfg, func(f *fake) { f.chain.Metagraph.Neurons[1].Axon = subnet.AxonInfo{IP: "0.0.0.0"} }, "axon on chain vs this machine", Warn, "start the miner"},
		{"ip shared with an older uid", minerCfg, func(f *fake) {
			f.chain.Metagraph.Neurons[2].Axon.IP, f.chain.Metagraph.Neurons[2].RegisteredAt = "203.0.113.7", 2
		}, "axon on chain vs this machine", Fail, "one uid per IP"},
		{"ip shared with a newer uid", minerCfg, func(f *fake) { f.chain.Metagraph.Neurons[2].Axon.IP = "::ffff:203.0.113.7" }, "axon on chain vs this machine", Pass, "no other uid"},
		{"outdated", valCfg, func(f *fake) { f.chain.Hyper.WeightsVersionKey = 2000000 }, "version vs the subnet's", Warn, "upgrade"},
		{"stale axon version", minerCfg, func(f *fake) { f.chain.Metagraph.Neurons[1].Axon.Version = 1001000 }, "version vs the subnet's", Warn, "restart the miner"},
		{"clock far off", valCfg, func(f *fake) { f.chain.Time, f.chain.Uncertainty = now.Add(-20*time.Second), 12*time.Second }, "clock vs chain", Fail, "set-ntp"},
		{"clock slightly off", valCfg, func(f *fake) { f.chain.Time, f.chain.Uncertainty = now.Add(4*time.Second), time.Second }, "clock vs chain", Warn, "5 s"},
		{"no chain time", valCfg, func(f *fake) { f.chain.Time = time.Time{} }, "clock vs chain", Warn, "could not be measured"},
		{"disk nearly full", minerCfg, func(f *fake) { f.free = 5 << 30 }, "free disk", Fail, "below 10.0 GiB"},
		{"disk low", minerCfg, func(f *fake) { f.free = 20 << 30 }, "free disk", Warn, "below 50.0 GiB"},
		{"disk fine for a validator", valCfg, func(f *fake) { f.free = 20 << 30 }, "free disk", Pass, "20.0 GiB"},
		{"no validator results", apiCfg, func(f *fake) { f.resErr = errors.New("no validator.db in /srv/validator") }, "validator results", Fail, "--api.validator-data"},
		{"validator never swept", apiCfg, func(f *fake) { f.results.Miners = 0 }, "validator results", Warn, "first sweep"},
		{"validator stopped", apiCfg, func(f *fake) { f.results.Newest = now.Add(-5 * time.Hour) }, "validator results", Warn, "seems stopped"},
		{"https on the network", apiCfg, func(*fake) {}, "api listen address", Pass, "HTTPS"},
		{"loopback", func() Config { c := apiCfg(); c.APIListen, c.TLS = "127.0.0.1:8903", false; return c }, func(*fake) {}, "api listen address", Pass, "loopback"},
		{"public without tls", func() Config { c := apiCfg(); c.TLS = false; return c }, func(*fake) {}, "api listen address", Warn, "--api.tls-cert"},
		{"bad listen", func() Config { c := apiCfg(); c.APIListen = "8903"; return c }, func(*fake) {}, "api listen address", Fail, "HOST:PORT"},
		{"no tls", func() Config { c := apiCfg(); c.TLS = false; return c }, func(*fake) {}, "tls certificate", Pass, "plain HTTP"},
		{"unreadable certificate", apiCfg, func(f *fake) { f.certErr = errors.New("tls: private key does not match public key") }, "tls certificate", Fail, "does not match"},
		{"expired certificate", apiCfg, func(f *fake) { f.cert.NotAfter = now.Add(-time.Hour) }, "tls certificate", Fail, "renew"},
		{"certificate expiring", apiCfg, func(f *fake) { f.cert.NotAfter = now.Add(72 * time.Hour) }, "tls certificate", Warn, "expires in 72h"},
		{"certificate not valid yet", apiCfg, func(f *fake) { f.cert.NotBefore = now.Add(time.Hour) }, "tls certificate", Fail, "not valid yet"},
		{"api.db readable by others", apiCfg, func(f *fake) { f.files["/srv/api/api.db"] = File{Exists: true, Mode: 0o644} }, "api state file", Fail, "chmod 600 /srv/api/api.db"},
		{"no api.db yet", apiCfg, func(f *fake) { delete(f.files, "/srv/api/api.db") }, "api state file", Pass, "not created yet"},
		{"token file readable by others", apiCfg, func(f *fake) { f.files["/srv/admin.token"] = File{Exists: true, Mode: 0o640} }, "admin token file", Fail, "chmod 600 /srv/admin.token"},
		{"token file missing", apiCfg, func(f *fake) { delete(f.files, "/srv/admin.token") }, "admin token file", Fail, "does not exist"},
		{"token revoked", apiCfg, func(f *fake) { f.token.Problem = "revoked" }, "admin token file", Fail, "token create"},
		{"token not admin", apiCfg, func(f *fake) { f.token.Admin = false }, "admin token file", Warn, "no admin scope"},
		{"token unchecked", apiCfg, func(f *fake) { f.tokenErr = errors.New("no api.db in /srv/api") }, "admin token file", Warn, "--api.data"},
		{"no token file named", func() Config { c := apiCfg(); c.TokenFile = ""; return c }, func(*fake) {}, "admin token file", Pass, "none named"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := healthy()
			tc.breakf(f)
			r := Run(context.Background(), tc.cfg(), f)
			var got *Result
			for i := range r.Results {
				if r.Results[i].Check == tc.check {
					got = &r.Results[i]
				}
			}
			if got == nil {
				t.Fatalf("no %q check for %s", tc.check, tc.cfg().Role)
			}
			text := got.Found + " | " + got.Meaning + " | " + got.Remedy
			if got.Status != tc.want || !strings.Contains(text, tc.words) {
				t.Fatalf("%s: %s %q; want %s with %q", tc.check, got.Status, text, tc.want, tc.words)
			}
			if got.Status != Pass && (got.Meaning == "" || got.Remedy == "") {
				t.Fatalf("%s without meaning or remedy: %+v", got.Status, got)
			}
			if r.Failed() != (tc.want == Fail) && tc.want != Warn {
				t.Fatalf("report failed = %v", r.Failed())
			}
		})
	}
}

func TestReportOutput(t *testing.T) {
	f := healthy()
	f.free = 1 << 30
	r := Run(context.Background(), minerCfg(), f)
	var text, js bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "FAIL  free disk") || !strings.Contains(text.String(), "remedy:  free disk space") ||
		!strings.Contains(text.String(), "10 passed, 0 warning(s), 1 failed") {
		t.Fatalf("text:\n%s", &text)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Results) != 11 || !back.Failed() || back.Role != "miner" {
		t.Fatalf("json round trip: %v %+v", err, back)
	}
}

func TestRuleCovers(t *testing.T) {
	for rule, want := range map[string]bool{"8091/tcp": true, "8091": true, "8000:9000/tcp": true, "8091/udp": false, "9000:9999": false, "x": false, "8000:y": false} {
		if ruleCovers(rule, 8091) != want {
			t.Errorf("%q covers 8091 = %v", rule, !want)
		}
	}
}
