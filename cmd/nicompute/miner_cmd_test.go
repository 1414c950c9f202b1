package main

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/miner"
	"github.com/nicompute/nicompute/internal/version"
	"github.com/nicompute/nicompute/internal/wallet"
)

// TestMinerFlags checks the flags' translation into minerOptions and the
// usage errors.
func TestMinerFlags(t *testing.T) {
	base := func() minerFlags {
		return minerFlags{netuid: 27, axonPort: 8091, sshPort: 4444, sshIP: "0.0.0.0", sshForwarding: true, threshold: 60, image: "img",
			reserveRAM: "2GiB", leaseMemory: "1GiB", limits: limitFlags{diskReserve: "10%", leaseDisk: "20GiB", diskCheck: 5 * time.Second, pogCache: "512MiB"}}
	}
	// SN27's validators and register_api get the images they ask for.
	if got, err := newMinerCmd(&app{}).Flags().GetStringSlice("miner.images"); err != nil || !slices.Equal(got, miner.SN27Images()) {
		t.Fatalf("--miner.images default %q, %v; want SN27's images", got, err)
	}
	o, err := base().options()
	if err != nil {
		t.Fatal(err)
	}
	if o.AxonListen != ":8091" || o.ExternalIP != "" || o.ExternalPort != 8091 || o.SSHPorts != (miner.PortRange{First: 4444, Last: 4543}) ||
		o.Reserve.MemoryBytes != 2<<30 || o.LeaseMemory != 1<<30 || o.Policy.MinValidatorVersion != version.Int()/1000*1000 || o.DisableSSHForwarding ||
		o.Reserve.DiskPercent != 10 || o.Reserve.DiskBytes != 0 || o.LeaseDisk != 20<<30 || o.DiskCheck != 5*time.Second ||
		len(o.AllowCIDRs) != 0 || o.UnsafeUnconfined || o.PoGCacheBytes != 512<<20 {
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
		{"ssh forwarding off", func(f *minerFlags) { f.sshForwarding = false }, func(o minerOptions) bool { return o.DisableSSHForwarding }},
		{"disk reserve in bytes", func(f *minerFlags) { f.limits.diskReserve = "50GiB" }, func(o minerOptions) bool {
			return o.Reserve.DiskBytes == 50<<30 && o.Reserve.DiskPercent == 0
		}},
		{"deprecated disk reserve", func(f *minerFlags) { f.limits.oldDiskReserve = "7GiB" }, func(o minerOptions) bool {
			return o.Reserve.DiskBytes == 7<<30 && o.Reserve.DiskPercent == 0
		}},
		{"allowed ranges", func(f *minerFlags) { f.limits.allowCIDRs = []string{"10.1.2.3/16", " fd00::/8"} }, func(o minerOptions) bool {
			return len(o.AllowCIDRs) == 2 && o.AllowCIDRs[0].String() == "10.1.0.0/16" && o.AllowCIDRs[1].String() == "fd00::/8"
		}},
		{"unconfined", func(f *minerFlags) { f.limits.unconfined = true }, func(o minerOptions) bool { return o.UnsafeUnconfined }},
		{"no worker caches", func(f *minerFlags) { f.limits.pogCache = "0" }, func(o minerOptions) bool { return o.PoGCacheBytes < 0 }},
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
		func(f *minerFlags) { f.limits.diskReserve = "101%" },
		func(f *minerFlags) { f.limits.diskReserve = "x%" },
		func(f *minerFlags) { f.limits.leaseDisk = "0" },
		func(f *minerFlags) { f.limits.diskCheck = -time.Second },
		func(f *minerFlags) { f.limits.allowCIDRs = []string{"10.0.0.1"} },
		func(f *minerFlags) { f.limits.pogCache = "big" },
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
		"--miner.data", t.TempDir(), "--miner.image", "busybox", "--miner.images="}, Stdio{In: strings.NewReader(""), Out: &out, Err: &errb})
	hint := "nicompute subnet register --netuid " + strconv.Itoa(int(w.netuid)) + " --wallet.path " + w.wallets +
		" --wallet.name stranger --subtensor.chain_endpoint " + w.node.Endpoint()
	if code != 1 || !strings.Contains(errb.String(), "is not registered on subnet") || !strings.Contains(errb.String(), hint) {
		t.Fatalf("exit %d: %s; want the hint %q", code, errb.String(), hint)
	}
}
