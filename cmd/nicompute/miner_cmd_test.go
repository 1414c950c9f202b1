package main

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/nicompute/nicompute/internal/miner"
	"github.com/nicompute/nicompute/internal/version"
	"github.com/nicompute/nicompute/internal/wallet"
)

// TestMinerFlags checks the flags' translation into minerOptions and the
// usage errors.
func TestMinerFlags(t *testing.T) {
	base := func() minerFlags {
		return minerFlags{netuid: 27, axonPort: 8091, sshPort: 4444, sshIP: "0.0.0.0", threshold: 60, image: "img",
			reserveRAM: "2GiB", reserveDisk: "20GiB", leaseMemory: "1GiB"}
	}
	o, err := base().options()
	if err != nil {
		t.Fatal(err)
	}
	if o.AxonListen != ":8091" || o.ExternalIP != "" || o.ExternalPort != 8091 || o.SSHPorts != (miner.PortRange{First: 4444, Last: 4543}) ||
		o.Reserve.MemoryBytes != 2<<30 || o.LeaseMemory != 1<<30 || o.Policy.MinValidatorVersion != version.Int()/1000*1000 {
		t.Fatalf("defaults: %+v", o)
	}
	for _, tc := range []struct {
		name  string
		mod   func(*minerFlags)
		check func(minerOptions) bool
	}{
		{"bind ip is the external ip", func(f *minerFlags) { f.axonIP = "127.0.0.2" }, func(o minerOptions) bool {
			return o.AxonListen == "127.0.0.2:8091" && o.ExternalIP == "127.0.0.2"
		}},
		{"external ip wins", func(f *minerFlags) { f.axonIP, f.externalIP, f.externalPort = "0.0.0.0", "203.0.113.7", 9000 }, func(o minerOptions) bool {
			return o.AxonListen == "0.0.0.0:8091" && o.ExternalIP == "203.0.113.7" && o.ExternalPort == 9000
		}},
		{"port range", func(f *minerFlags) { f.sshPortRange = "5000-5009" }, func(o minerOptions) bool { return o.SSHPorts.Len() == 10 }},
		{"version check off", func(f *minerFlags) { f.minValidator = "0" }, func(o minerOptions) bool { return o.Policy.MinValidatorVersion == 0 }},
		{"version", func(f *minerFlags) { f.minValidator = "1.8.3" }, func(o minerOptions) bool { return o.Policy.MinValidatorVersion == 1_008_003 }},
		{"body signatures", func(f *minerFlags) { f.requireBodySig = true }, func(o minerOptions) bool { return o.RequireBodySignature }},
		{"extra ports", func(f *minerFlags) { f.portsRange, f.portsMax = "30000-30009", 2 }, func(o minerOptions) bool {
			return o.LeasePorts == (miner.PortRange{First: 30000, Last: 30009}) && o.MaxLeasePorts == 2
		}},
		{"lists", func(f *minerFlags) {
			f.blackHotkeys, f.whiteHotkeys, f.notEnough, f.notUpdated = []string{"a"}, []string{"b"}, true, true
		}, func(o minerOptions) bool {
			return o.Policy.BlacklistHotkeys[0] == "a" && o.Policy.WhitelistHotkeys[0] == "b" && o.Policy.AllowLowStake && o.Policy.AllowOutdated
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := base()
			tc.mod(&f)
			o, err := f.options()
			if err != nil || !tc.check(o) {
				t.Fatalf("options %+v, %v", o, err)
			}
		})
	}
	for _, mod := range []func(*minerFlags){
		func(f *minerFlags) { f.axonPort = 0 },
		func(f *minerFlags) { f.axonIP = "example.com" },
		func(f *minerFlags) { f.externalIP = "1.2.3" },
		func(f *minerFlags) { f.sshPortRange = "9-1" },
		func(f *minerFlags) { f.sshPort = 70000 },
		func(f *minerFlags) { f.sshIP = "all" },
		func(f *minerFlags) { f.threshold = 101 },
		func(f *minerFlags) { f.minValidator = "1.x" },
		func(f *minerFlags) { f.reserveRAM = "-1" },
		func(f *minerFlags) { f.leaseMemory = "lots" },
		func(f *minerFlags) { f.reserveCPUs = -1 },
		func(f *minerFlags) { f.portsRange = "ports" },
		func(f *minerFlags) { f.portsMax = 17 },
	} {
		f := base()
		mod(&f)
		if _, err := f.options(); err == nil {
			t.Errorf("flags %+v accepted", f)
		}
	}
}

// TestMinerUnregistered checks `nicompute miner` refuses to start, with a
// clear message, when its hotkey is not registered on the subnet.
func TestMinerUnregistered(t *testing.T) {
	w := newMinerWorld(t)
	stranger := mustURI(t, "//Unregistered"+randHex(t, 4))
	if err := wallet.Open(w.wallets, "stranger").WriteHotkey("default", stranger, false); err != nil {
		t.Fatal(err)
	}
	var out, errb lockedBuffer
	code := Run(context.Background(), []string{"miner", "--subtensor.chain_endpoint", w.node.Endpoint(), "--wallet.path", w.wallets,
		"--wallet.name", "stranger", "--netuid", strconv.Itoa(int(w.netuid)), "--axon.ip", "127.0.0.1", "--axon.port", "1",
		"--miner.data", t.TempDir(), "--miner.image", "busybox"}, Stdio{In: strings.NewReader(""), Out: &out, Err: &errb})
	if code != 1 || !strings.Contains(errb.String(), "is not registered on subnet") || !strings.Contains(errb.String(), "subnet register") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}
