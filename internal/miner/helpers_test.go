package miner

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/chain/local"
	"github.com/nicompute/nicompute/internal/docker"
	"github.com/nicompute/nicompute/internal/hostinfo"
	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/protocol"
	"github.com/nicompute/nicompute/internal/sqlite"
	"github.com/nicompute/nicompute/internal/subnet"
)

// fakeRuntime keeps containers in memory. Its validators are the docker
// package's, so renter input is checked exactly as in production. down
// makes every engine call fail with EUNAVAILABLE.
type fakeRuntime struct {
	down    atomic.Bool
	creates atomic.Int64
	// createHook and startHook, when set, run inside Create and Start
	// (tests block or fail there).
	createHook func(ContainerSpec) error
	startHook  func(lease string) error
	// pullHook, when set, is the pull of an absent image (nil: it succeeds
	// at once); pulls counts pulls.
	pullHook func(ctx context.Context, image string, progress func(PullProgress)) error
	pulls    atomic.Int64

	mu         sync.Mutex
	containers map[string]*fakeContainer
	absent     map[string]bool  // images missing until pulled
	quota      bool             // the engine holds leases to their size
	written    map[string]int64 // disk use by lease, as DiskUsage reports it
}

type fakeContainer struct {
	Container
	keys     []ssh.PublicKey
	password string
	spec     ContainerSpec
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{containers: map[string]*fakeContainer{}, written: map[string]int64{}}
}

var errDown = market.Errorf(market.EUNAVAILABLE, "docker engine unreachable")

func (f *fakeRuntime) get(lease string) (*fakeContainer, error) {
	if f.down.Load() {
		return nil, errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[lease]
	if c == nil {
		return nil, market.Errorf(market.ENOTFOUND, "lease %s not found", lease)
	}
	return c, nil
}

func (f *fakeRuntime) Create(ctx context.Context, s ContainerSpec) (Container, error) {
	if f.down.Load() {
		return Container{}, errDown
	}
	if f.createHook != nil {
		if err := f.createHook(s); err != nil {
			return Container{}, err
		}
	}
	if s.Password != "" && len(s.Password) < docker.MinPasswordLen {
		return Container{}, market.Errorf(market.EINVALID, "short password")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.containers[s.LeaseID]; ok {
		return Container{}, market.Errorf(market.ECONFLICT, "lease %s already has a container", s.LeaseID)
	}
	f.creates.Add(1)
	c := &fakeContainer{
		Container: Container{ID: "c-" + s.LeaseID, LeaseID: s.LeaseID, Image: s.Image, State: ContainerCreated, SSHPort: s.SSHPort, Created: time.Now()},
		keys:      s.AuthorizedKeys, password: s.Password, spec: s,
	}
	f.containers[s.LeaseID] = c
	return c.Container, nil
}

func (f *fakeRuntime) setState(lease string, from []string, to string) error {
	c, err := f.get(lease)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if from != nil && !slices.Contains(from, c.State) {
		return market.Errorf(market.ECONFLICT, "lease %s: container is %s", lease, c.State)
	}
	c.State = to
	return nil
}

func (f *fakeRuntime) Start(_ context.Context, lease string) error {
	if f.startHook != nil {
		if err := f.startHook(lease); err != nil {
			return err
		}
	}
	return f.setState(lease, nil, ContainerRunning)
}
func (f *fakeRuntime) Restart(_ context.Context, lease string) error {
	return f.setState(lease, []string{ContainerRunning, ContainerExited}, ContainerRunning)
}
func (f *fakeRuntime) Pause(_ context.Context, lease string) error {
	return f.setState(lease, []string{ContainerRunning}, ContainerPaused)
}
func (f *fakeRuntime) Unpause(_ context.Context, lease string) error {
	return f.setState(lease, []string{ContainerPaused}, ContainerRunning)
}

func (f *fakeRuntime) SetAuthorizedKeys(_ context.Context, lease string, keys []ssh.PublicKey) error {
	c, err := f.get(lease)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c.keys = keys
	return nil
}

func (f *fakeRuntime) Remove(_ context.Context, lease string) error {
	if f.down.Load() {
		return errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.containers, lease)
	return nil
}

func (f *fakeRuntime) Inspect(_ context.Context, lease string) (Container, error) {
	c, err := f.get(lease)
	if err != nil {
		return Container{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return c.Container, nil
}

func (f *fakeRuntime) List(context.Context) ([]Container, error) {
	if f.down.Load() {
		return nil, errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Container
	for _, c := range f.containers {
		out = append(out, c.Container)
	}
	return out, nil
}

func (f *fakeRuntime) Ping(context.Context) error {
	if f.down.Load() {
		return errDown
	}
	return nil
}

func (f *fakeRuntime) EngineVersion(context.Context) (string, error) {
	if f.down.Load() {
		return "", errDown
	}
	return "20.10.fake", nil
}

func (f *fakeRuntime) HasImage(_ context.Context, image string) (bool, error) {
	if f.down.Load() {
		return false, errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.absent[image], nil
}

func (f *fakeRuntime) PullImage(ctx context.Context, image string, progress func(PullProgress)) error {
	f.pulls.Add(1)
	if f.pullHook != nil {
		if err := f.pullHook(ctx, image, progress); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.absent, image)
	return nil
}

// setAbsent marks images as missing from the engine.
func (f *fakeRuntime) setAbsent(images ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.absent == nil {
		f.absent = map[string]bool{}
	}
	for _, img := range images {
		f.absent[img] = true
	}
}

func (f *fakeRuntime) DiskQuota(context.Context) (bool, error) {
	if f.down.Load() {
		return false, errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.quota, nil
}

func (f *fakeRuntime) DiskUsage(context.Context) (map[string]int64, error) {
	if f.down.Load() {
		return nil, errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int64{}
	for id := range f.containers {
		out[id] = f.written[id]
	}
	return out, nil
}

// write sets what lease has written.
func (f *fakeRuntime) write(lease string, n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.written[lease] = n
}

func (f *fakeRuntime) ValidateImage(ref string) (string, error) { return docker.ValidateImage(ref) }
func (f *fakeRuntime) ParseSSHKeys(text string) ([]ssh.PublicKey, error) {
	return docker.ParseSSHKeys(text)
}
func (f *fakeRuntime) ValidateVolumePath(p string) error { return docker.ValidateVolumePath(p) }
func (f *fakeRuntime) CheckDockerfile(text string) error { return docker.CheckDockerfile(text) }

func (f *fakeRuntime) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.containers)
}

func (f *fakeRuntime) container(lease string) *fakeContainer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.containers[lease]
}

// fakeSpecs is a machine of 8 CPUs, 16 GiB, 100 GiB disk and two GPUs.
func fakeSpecs() hostinfo.Static {
	return hostinfo.Static{Devices: []market.GPUDevice{
		{Index: 0, UUID: "GPU-0", Name: "NVIDIA H100 80GB HBM3", CapacityMiB: 81559},
		{Index: 1, UUID: "GPU-1", Name: "NVIDIA H100 80GB HBM3", CapacityMiB: 81559},
	}}
}

type staticSpecs struct{ gpus hostinfo.Static }

// staticDisk is the fake machine's disk: 100 GiB, 80 GiB free; with the
// default 10 % reserve, 70 GiB can be leased.
var staticDisk = market.DiskSpecs{Total: 100 << 30, Free: 80 << 30, Path: "/var/lib/docker"}

func (s staticSpecs) Disk(context.Context) (market.DiskSpecs, error) { return staticDisk, nil }

func (s staticSpecs) Collect(ctx context.Context) (market.Specs, error) {
	devs, drv, _ := s.gpus.GPUs(ctx)
	spec := market.Specs{
		CPU:  market.CPUSpecs{Count: 8},
		RAM:  market.RAMSpecs{Total: 16 << 30, Available: 12 << 30},
		Disk: staticDisk,
		GPU:  market.GPUSpecs{Count: len(devs), Details: devs, DriverVersion: drv.DriverVersion},
	}
	for _, d := range devs {
		spec.GPU.CapacityMiB += d.CapacityMiB
	}
	return spec, nil
}

// fakeGuard stands in for the host packet filter; err, when set, is why it
// cannot be installed.
type fakeGuard struct {
	mu        sync.Mutex
	err       error
	installed bool
	confines  int
	releases  int
}

func (g *fakeGuard) Check(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

func (g *fakeGuard) Confine(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return g.err
	}
	g.installed = true
	g.confines++
	return nil
}

func (g *fakeGuard) Release(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.installed = false
	g.releases++
	return nil
}

func (g *fakeGuard) Describe(context.Context) (string, []string) {
	return "fake packet filter", []string{"10.9.0.0/16"}
}

func (g *fakeGuard) set(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.err = err
}

func (g *fakeGuard) state() (installed bool, confines, releases int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.installed, g.confines, g.releases
}

// cutChain wraps a chain so a test can make it unreachable.
type cutChain struct {
	Chain
	cut    atomic.Bool
	serves atomic.Int64
}

var errChainDown = subnet.Errorf(subnet.EUNAVAILABLE, "chain unreachable")

func (c *cutChain) CurrentBlock(ctx context.Context) (uint64, error) {
	if c.cut.Load() {
		return 0, errChainDown
	}
	return c.Chain.CurrentBlock(ctx)
}

func (c *cutChain) Metagraph(ctx context.Context, n subnet.NetUID) (*subnet.Metagraph, error) {
	if c.cut.Load() {
		return nil, errChainDown
	}
	return c.Chain.Metagraph(ctx, n)
}

func (c *cutChain) ServeAxon(ctx context.Context, hk subnet.Signer, n subnet.NetUID, a subnet.AxonInfo) error {
	if c.cut.Load() {
		return errChainDown
	}
	c.serves.Add(1)
	return c.Chain.ServeAxon(ctx, hk, n, a)
}

// world is an embedded chain with a subnet, a registered miner hotkey and
// a registered validator holding the permit stake.
type world struct {
	node      *local.Node
	client    *local.Client
	netuid    subnet.NetUID
	miner     *keys.Keypair
	validator *keys.Keypair
}

func mustKey(tb testing.TB, uri string) *keys.Keypair {
	tb.Helper()
	k, err := keys.FromURI(uri)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func newWorld(tb testing.TB) *world {
	tb.Helper()
	ctx := context.Background()
	g := local.DefaultGenesis()
	g.ServingRateLimit = 0
	g.MaxRegistrationsPerBlock = 64
	n, err := local.Open(ctx, local.Config{DataDir: tb.TempDir(), Genesis: &g})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { n.Close() })
	c, err := local.Dial(ctx, n.Endpoint())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	w := &world{node: n, client: c, miner: mustKey(tb, "//MinerHot"), validator: mustKey(tb, "//ValidatorHot")}
	owner := mustKey(tb, "//Alice")
	if _, err := c.Faucet(ctx, owner.SS58(), subnet.TAO(100_000)); err != nil {
		tb.Fatal(err)
	}
	if w.netuid, err = c.CreateSubnet(ctx, owner, 0); err != nil {
		tb.Fatal(err)
	}
	w.register(tb, owner, w.miner, 0)
	w.register(tb, owner, w.validator, 2000)
	return w
}

// register registers hotkey paid by coldkey and stakes stakeTAO on it.
func (w *world) register(tb testing.TB, coldkey, hotkey *keys.Keypair, stakeTAO float64) {
	tb.Helper()
	ctx := context.Background()
	if _, err := w.client.BurnedRegister(ctx, coldkey, w.netuid, hotkey.SS58()); err != nil {
		tb.Fatal(err)
	}
	if stakeTAO > 0 {
		if err := w.client.AddStake(ctx, coldkey, w.netuid, hotkey.SS58(), subnet.TAO(stakeTAO)); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := w.node.Seal(ctx); err != nil {
		tb.Fatal(err)
	}
}

// testMiner is a Service on the fake runtime with a real store and chain.
type testMiner struct {
	svc   *Service
	rt    *fakeRuntime
	guard *fakeGuard
	store *sqlite.LeaseStore
	chain *cutChain
	w     *world
	d     *axon.Dendrite
}

func startTestMiner(tb testing.TB, w *world, mod func(*Config, *Deps)) *testMiner {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "leases.db"), sqlite.LeaseSchema)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	tm := &testMiner{rt: newFakeRuntime(), guard: &fakeGuard{}, store: sqlite.NewLeaseStore(db), chain: &cutChain{Chain: w.client}, w: w}
	return tm.start(tb, mod)
}

func (tm *testMiner) start(tb testing.TB, mod func(*Config, *Deps)) *testMiner {
	tb.Helper()
	cfg := Config{
		NetUID: tm.w.netuid, Hotkey: tm.w.miner, Listen: "127.0.0.1:0", ExternalIP: "127.0.0.1", Version: 1000,
		DefaultImage: "busybox", Images: []string{"alpine:3.20"},
		SSHPorts: PortRange{First: 20000, Last: 20999}, SSHHostIP: "127.0.0.1",
		PollInterval: 50 * time.Millisecond, SweepInterval: time.Hour,
	}
	if _, ok := tb.(*testing.B); !ok {
		cfg.Log = nictest.Logger(tb)
	}
	deps := Deps{Chain: tm.chain, Runtime: tm.rt, Store: tm.store, Specs: staticSpecs{fakeSpecs()}, Guard: tm.guard}
	if mod != nil {
		mod(&cfg, &deps)
	}
	svc, err := New(context.Background(), deps, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tm.svc = svc
	tm.d = axon.NewDendrite(tm.w.validator)
	tb.Cleanup(func() {
		tm.d.Close()
		svc.Close()
	})
	return tm
}

func (tm *testMiner) target() axon.Target {
	return axon.Target{Addr: tm.svc.AxonAddr(), Hotkey: tm.svc.Hotkey()}
}

// call sends an Allocate as signer (nil: the validator) and returns the
// answer and the status of a refusal — the axon's, or for a refusal the
// miner answered with 200, the status of its code (protocol.CallAllocate)
// — or 200 on success.
func (tm *testMiner) call(tb testing.TB, signer *keys.Keypair, req *protocol.Allocate) (protocol.Output, int) {
	tb.Helper()
	d := tm.d
	if signer != nil {
		d = axon.NewDendrite(signer)
		defer d.Close()
	}
	var resp protocol.Allocate
	_, err := protocol.CallAllocate(context.Background(), d, tm.target(), req, &resp, 10*time.Second)
	if err == nil {
		return resp.Output, 200
	}
	var ae *axon.Error
	if !errors.As(err, &ae) {
		tb.Fatalf("call: %v", err)
	}
	return resp.Output, ae.Status
}

// renter is a renter key pair.
type renter struct {
	priv *rsa.PrivateKey
	pem  string
}

func newRenter(tb testing.TB) renter {
	tb.Helper()
	priv, pub, err := protocol.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	return renter{priv, pub}
}

func sshPub(tb testing.TB) (ssh.Signer, string) {
	tb.Helper()
	s := nictest.SSHKey(tb)
	return s, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey())))
}

func allocReq(r renter, sshKey string, req market.Requirement) *protocol.Allocate {
	a := protocol.NewAllocate()
	a.Checking = false
	a.Timeline = 1
	a.PublicKey = r.pem
	a.SetRequirement(req)
	a.DockerRequirement.SSHKey = sshKey
	return a
}

func statusReq(r renter) *protocol.Allocate {
	a := protocol.NewAllocate()
	a.Timeline = 0
	a.PublicKey = r.pem
	return a
}

func deallocReq(r renter) *protocol.Allocate {
	a := protocol.NewAllocate()
	a.Checking, a.Timeline = false, 0
	a.PublicKey = r.pem
	return a
}

func actionReq(r renter, action, key string) *protocol.Allocate {
	a := deallocReq(r)
	a.DockerChange = true
	a.DockerAction = protocol.DockerAction{Action: action, SSHKey: key}
	return a
}

func (tm *testMiner) live(tb testing.TB) []market.Lease {
	tb.Helper()
	ls, err := tm.store.LiveLeases(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return ls
}

func describe(ls []market.Lease) string {
	var b strings.Builder
	for _, l := range ls {
		fmt.Fprintf(&b, "%s:%s:%d ", l.ID, l.State, l.SSHPort)
	}
	return b.String()
}
