package miner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
)

// allocRequest is a validated allocation.
type allocRequest struct {
	Owner       market.LeaseOwner
	Requirement market.Requirement
	Duration    time.Duration
	Image       string
	Keys        []ssh.PublicKey
	Password    string
	VolumePath  string
	Testing     bool
	// Ports are the extra container ports asked for.
	Ports []int
}

// leaseManager owns the lease table: every decision that reads the live
// leases and then changes them goes through mu, so two requests can never
// reserve the same resources, and the store refuses double bookings on its
// own as well. Runtime calls, which are slow, run outside mu; a lease being
// created is marked in-flight so reconciliation leaves it alone, and each
// lease has an operation lock so that deallocation, expiry and docker
// actions on one lease never interleave. Lock order: a lease's op lock,
// then mu; mu is never held across a runtime call.
type leaseManager struct {
	cfg      Config
	rt       Runtime
	store    LeaseStore
	specs    SpecsSource
	guard    NetworkGuard
	capacity market.Capacity // disk: see capacityNow
	metrics  *metrics
	log      *slog.Logger
	poke     chan struct{} // wakes the expiry loop after a change
	disk     *diskWatch
	cache    *pogCache
	// confined is the last outcome of guard.Confine or Check, so changes
	// are logged once.
	confined atomic.Int32

	// reconciled is set once leases were reconciled with the runtime;
	// allocations wait for it. runtimeUp is the last known engine state.
	reconciled atomic.Bool
	runtimeUp  atomic.Bool

	// recMu serialises reconciliations. Lock order: recMu, a lease's op
	// lock, mu.
	recMu sync.Mutex

	// mu protects the following.
	mu       sync.Mutex
	inflight map[string]bool // leases being created by this process
	ops      map[string]*leaseOp
}

type leaseOp struct {
	mu   sync.Mutex
	refs int // guarded by leaseManager.mu
}

func newLeaseManager(cfg Config, deps Deps, capacity market.Capacity, cache *pogCache, m *metrics, log *slog.Logger) *leaseManager {
	return &leaseManager{
		cfg: cfg, rt: deps.Runtime, store: deps.Store, specs: deps.Specs, guard: deps.Guard, capacity: capacity, cache: cache, metrics: m,
		log:      log.With("component", "leases"),
		poke:     make(chan struct{}, 1),
		disk:     newDiskWatch(),
		inflight: map[string]bool{},
		ops:      map[string]*leaseOp{},
	}
}

// lock takes lease id's operation lock; the returned func releases it.
func (m *leaseManager) lock(id string) func() {
	m.mu.Lock()
	op := m.ops[id]
	if op == nil {
		op = &leaseOp{}
		m.ops[id] = op
	}
	op.refs++
	m.mu.Unlock()
	op.mu.Lock()
	return func() {
		op.mu.Unlock()
		m.mu.Lock()
		if op.refs--; op.refs == 0 {
			delete(m.ops, id)
		}
		m.mu.Unlock()
	}
}

func (m *leaseManager) wake() {
	select {
	case m.poke <- struct{}{}:
	default:
	}
}

// free returns the capacity not held by live leases.
func (m *leaseManager) free(ctx context.Context) (market.Capacity, error) {
	live, err := m.store.LiveLeases(ctx)
	if err != nil {
		return market.Capacity{}, fmt.Errorf("read leases: %w", err)
	}
	c, err := m.capacityNow(ctx, live)
	if err != nil {
		return market.Capacity{}, err
	}
	return c.Free(live), nil
}

// capacityNow is the machine's capacity with the disk measured now: the
// free space of the filesystem holding the containers less the reserve
// (see market.DiskCapacity), with what the live leases wrote as last
// measured.
func (m *leaseManager) capacityNow(ctx context.Context, live []market.Lease) (market.Capacity, error) {
	disk, err := m.specs.Disk(ctx)
	if err != nil {
		return market.Capacity{}, fmt.Errorf("measure disk: %w", err)
	}
	c := m.capacity
	c.DiskBytes = market.DiskCapacity(disk, m.cfg.Reserve, live, m.disk.usage())
	return c, nil
}

// defaults are what a lease gets where its request names nothing.
func (m *leaseManager) defaults() market.LeaseDefaults {
	return market.LeaseDefaults{MemoryBytes: m.cfg.DefaultMemory, DiskBytes: m.cfg.DefaultDisk}
}

// heldBy returns a live lease (creating or active) owned by hotkey, under
// any public key, and whether there is one.
func (m *leaseManager) heldBy(ctx context.Context, hotkey string) (market.Lease, bool, error) {
	live, err := m.store.LiveLeases(ctx)
	if err != nil {
		return market.Lease{}, false, fmt.Errorf("read leases: %w", err)
	}
	for _, l := range live {
		if l.Owner.Hotkey == hotkey {
			return l, true, nil
		}
	}
	return market.Lease{}, false, nil
}

// check reports whether requirement r fits the free capacity now.
func (m *leaseManager) check(ctx context.Context, r market.Requirement) error {
	// An allocation would be refused while the packet filter is known to be
	// broken, so "is it free?" must not say yes then (the last guard call
	// decides: a check costs no packet-filter call).
	if m.confined.Load() == confineFailed && !m.cfg.AllowUnconfinedLeases {
		return errUnconfined
	}
	free, err := m.free(ctx)
	if err != nil {
		return err
	}
	_, err = free.Fit(r, m.defaults())
	return err
}

// ready refuses allocations while the runtime is known to be down or the
// leases have not been reconciled with it yet.
func (m *leaseManager) ready(ctx context.Context) error {
	if !m.runtimeUp.Load() {
		if err := m.rt.Ping(ctx); err != nil {
			return fmt.Errorf("container runtime: %w", err)
		}
		m.setRuntimeUp(true, nil)
	}
	if !m.reconciled.Load() {
		if err := m.reconcile(ctx); err != nil {
			return err
		}
	}
	return m.confine(ctx, m.guard.Check)
}

// allocate reserves resources for req, creates and starts its container
// and returns the active lease. A taken SSH port found only when the
// container starts is retried on another port.
func (m *leaseManager) allocate(ctx context.Context, req allocRequest) (market.Lease, error) {
	if err := m.ready(ctx); err != nil {
		return market.Lease{}, err
	}
	skip := map[int]bool{}
	for attempt := 0; ; attempt++ {
		l, err := m.reserve(ctx, req, skip)
		if err != nil {
			return market.Lease{}, err
		}
		l, err = m.create(ctx, l, req)
		if err != nil && errors.Is(err, errPortBusy) && attempt < 2 {
			skip[l.SSHPort] = true
			for _, p := range l.Ports {
				skip[p.Host] = true
			}
			continue
		}
		return l, err
	}
}

var errPortBusy = errors.New("ssh port busy")

// reserve picks resources and a port and records the lease as creating,
// all under mu.
func (m *leaseManager) reserve(ctx context.Context, req allocRequest, skip map[int]bool) (market.Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	live, err := m.store.LiveLeases(ctx)
	if err != nil {
		return market.Lease{}, fmt.Errorf("read leases: %w", err)
	}
	for _, l := range live {
		if l.Owner.Is(req.Owner) {
			return market.Lease{}, market.Errorf(market.ECONFLICT, "this hotkey and public key already hold lease %s on this miner; deallocate it or use another key", l.ID)
		}
	}
	capacity, err := m.capacityNow(ctx, live)
	if err != nil {
		return market.Lease{}, err
	}
	res, err := capacity.Free(live).Fit(req.Requirement, m.defaults())
	if err != nil {
		return market.Lease{}, err
	}
	port, err := m.choosePort(live, skip)
	if err != nil {
		return market.Lease{}, err
	}
	ports, err := m.chooseLeasePorts(live, req.Ports, skip)
	if err != nil {
		return market.Lease{}, err
	}
	now := m.cfg.Now().UTC()
	l := market.Lease{
		ID:        newLeaseID(),
		Owner:     req.Owner,
		State:     market.LeaseCreating,
		Resources: res,
		SSHPort:   port,
		Ports:     ports,
		Image:     req.Image,
		Testing:   req.Testing,
		Password:  req.Password != "",
		CreatedAt: now,
		ExpiresAt: now.Add(req.Duration),
	}
	if err := m.store.InsertLease(ctx, l); err != nil {
		return market.Lease{}, fmt.Errorf("record lease: %w", err)
	}
	m.inflight[l.ID] = true
	return l, nil
}

// choosePort returns the lowest port of the range that no live lease holds
// and that is free on the host right now.
func (m *leaseManager) choosePort(live []market.Lease, skip map[int]bool) (int, error) {
	p, ok := m.freePort(m.cfg.SSHPorts, heldPorts(live), skip)
	if !ok {
		return 0, market.Errorf(market.ECONFLICT, "no free ssh port in %d-%d", m.cfg.SSHPorts.First, m.cfg.SSHPorts.Last)
	}
	return p, nil
}

// chooseLeasePorts maps each requested container port to the lowest host
// port of LeasePorts that no live lease holds and that is free now.
func (m *leaseManager) chooseLeasePorts(live []market.Lease, want []int, skip map[int]bool) ([]market.PortMap, error) {
	if len(want) == 0 {
		return nil, nil
	}
	if m.cfg.LeasePorts == (PortRange{}) {
		return nil, market.Errorf(market.EINVALID, "this miner offers no extra ports")
	}
	if len(want) > m.cfg.MaxLeasePorts {
		return nil, market.Errorf(market.EINVALID, "this miner publishes at most %d extra ports per lease", m.cfg.MaxLeasePorts)
	}
	held := heldPorts(live)
	out := make([]market.PortMap, 0, len(want))
	for _, c := range want {
		p, ok := m.freePort(m.cfg.LeasePorts, held, skip)
		if !ok {
			return nil, market.Errorf(market.ECONFLICT, "no free port in %d-%d for container port %d", m.cfg.LeasePorts.First, m.cfg.LeasePorts.Last, c)
		}
		held[p] = true
		out = append(out, market.PortMap{Container: c, Host: p})
	}
	return out, nil
}

// heldPorts returns every host port live leases hold.
func heldPorts(live []market.Lease) map[int]bool {
	held := make(map[int]bool, len(live))
	for _, l := range live {
		held[l.SSHPort] = true
		for _, p := range l.Ports {
			held[p.Host] = true
		}
	}
	return held
}

// freePort returns the lowest port of r that is neither held nor skipped
// and that can be bound on the host right now.
func (m *leaseManager) freePort(r PortRange, held, skip map[int]bool) (int, bool) {
	for p := r.First; p <= r.Last; p++ {
		if held[p] || skip[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(m.cfg.SSHHostIP, strconv.Itoa(p)))
		if err != nil {
			continue // taken by something else on the host
		}
		ln.Close()
		return p, true
	}
	return 0, false
}

func newLeaseID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "l" + hex.EncodeToString(b[:])
}

// create runs the container of a reserved lease: create, record its id,
// start, activate. It runs to completion (or rolls back) even when the
// request's context ends, and rolls back — before activation, and again
// after it — a lease whose renter has stopped waiting or will have when
// the answer is ready (see late), so that the renter never holds an active
// lease it got no credentials for.
func (m *leaseManager) create(reqCtx context.Context, l market.Lease, req allocRequest) (market.Lease, error) {
	unlock := m.lock(l.ID)
	defer unlock()
	defer func() {
		m.mu.Lock()
		delete(m.inflight, l.ID)
		m.mu.Unlock()
		m.wake()
	}()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(reqCtx), m.cfg.CreateTimeout)
	defer cancel()
	fp := m.cfg.Failpoint
	fp("reserved")
	spec := ContainerSpec{
		LeaseID: l.ID, Image: l.Image, Resources: l.Resources, SSHPort: l.SSHPort, Ports: l.Ports,
		AuthorizedKeys: req.Keys, Password: req.Password, VolumePath: req.VolumePath,
	}
	if _, ok := m.cache.mounts(l); ok {
		// Without its cache a test lease still works: the validator
		// uploads its worker into the lease instead.
		if dir, err := m.cache.prepare(l.Owner.Hotkey); err != nil {
			m.log.Warn("test lease without a worker cache", "lease", l.ID, "err", err)
		} else {
			spec.CacheDir, spec.CacheTarget = dir, protocol.PoGCacheDir
		}
	}
	c, err := m.rt.Create(ctx, spec)
	if err != nil {
		return l, m.rollback(l, market.EndCreateFailed, fmt.Errorf("create container: %w", err))
	}
	fp("created")
	if err := m.store.SetLeaseContainer(ctx, l.ID, c.ID); err != nil {
		return l, m.rollback(l, market.EndCreateFailed, fmt.Errorf("record container: %w", err))
	}
	l.ContainerID = c.ID
	fp("recorded")
	// After the container exists (so a miner releasing the filter sees
	// the network in use) and before it runs.
	if err := m.confine(ctx, m.guard.Confine); err != nil {
		return l, m.rollback(l, market.EndCreateFailed, err)
	}
	if err := m.rt.Start(ctx, l.ID); err != nil {
		if market.ErrorCode(err) == market.ECONFLICT {
			err = fmt.Errorf("%w: %w", errPortBusy, err)
		}
		return l, m.rollback(l, market.EndCreateFailed, fmt.Errorf("start container: %w", err))
	}
	fp("started")
	if late(reqCtx) {
		return l, m.rollback(l, market.EndCreateFailed, errLate)
	}
	if err := m.store.ActivateLease(ctx, l.ID); err != nil {
		return l, m.rollback(l, market.EndCreateFailed, fmt.Errorf("activate lease: %w", err))
	}
	fp("activated")
	// Activation may itself have been slow: a renter that has been told
	// its request timed out must not be left holding a lease it cannot
	// use (it never got the credentials).
	if late(reqCtx) {
		return l, m.rollback(l, market.EndCreateFailed, errLate)
	}
	l.State = market.LeaseActive
	m.setRuntimeUp(true, nil)
	m.metrics.leaseAllocated(l.Testing)
	m.log.Info("lease allocated", "lease", l.ID, "owner", l.Owner.Hotkey, "port", l.SSHPort, "extra_ports", len(l.Ports), "image", l.Image,
		"gpus", len(l.Resources.GPUs), "cpus", l.Resources.CPUs, "memory_bytes", l.Resources.MemoryBytes,
		"expires", l.ExpiresAt.Format(time.RFC3339), "testing", l.Testing, "password", l.Password)
	return l, nil
}

// replyMargin is the least time a request must have left after its lease
// is activated for the miner to answer it: what remains (encrypting the
// credentials, writing the answer) takes far less. With less left, the
// axon may already be answering 408, so the lease is rolled back instead.
const replyMargin = 250 * time.Millisecond

// errLate is the error of an allocation whose renter stopped waiting.
var errLate = market.Errorf(market.EUNAVAILABLE, "request ended before the lease was ready")

// late reports whether the request has ended or has too little time left
// to carry the answer back.
func late(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	deadline, ok := ctx.Deadline()
	return ok && time.Until(deadline) < replyMargin
}

// rollback removes what a failed creation left and ends the lease. It
// returns cause. If the runtime cannot remove the container now, the lease
// still ends and reconciliation removes the orphan later.
func (m *leaseManager) rollback(l market.Lease, reason string, cause error) error {
	if market.ErrorCode(cause) == market.EUNAVAILABLE && !errors.Is(cause, errLate) {
		m.setRuntimeUp(false, cause)
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.CreateTimeout)
	defer cancel()
	if err := m.rt.Remove(ctx, l.ID); err != nil {
		m.log.Warn("remove container of failed lease; reconciliation retries", "lease", l.ID, "err", err)
	}
	if _, err := m.store.EndLease(ctx, l.ID, reason, m.cfg.Now()); err != nil {
		m.log.Error("end failed lease", "lease", l.ID, "err", err)
	}
	m.log.Warn("lease creation failed; rolled back", "lease", l.ID, "owner", l.Owner.Hotkey, "err", cause)
	m.releaseNetwork(ctx)
	return cause
}

// owned returns owner's live lease. Errors: EFORBIDDEN when the miner has
// live leases but none is owner's, ENOTFOUND when it has none at all.
func (m *leaseManager) owned(ctx context.Context, owner market.LeaseOwner) (market.Lease, error) {
	live, err := m.store.LiveLeases(ctx)
	if err != nil {
		return market.Lease{}, fmt.Errorf("read leases: %w", err)
	}
	for _, l := range live {
		if l.Owner.Is(owner) {
			return l, nil
		}
	}
	if len(live) > 0 {
		return market.Lease{}, market.Errorf(market.EFORBIDDEN, "no lease of this hotkey and public key on this miner; its leases belong to others")
	}
	return market.Lease{}, market.Errorf(market.ENOTFOUND, "no lease on this miner")
}

// withLease runs fn on owner's live lease under the lease's operation lock,
// after checking again that the lease is still live and active.
func (m *leaseManager) withLease(ctx context.Context, owner market.LeaseOwner, fn func(l market.Lease) error) (market.Lease, error) {
	l, err := m.owned(ctx, owner)
	if err != nil {
		return l, err
	}
	unlock := m.lock(l.ID)
	defer unlock()
	if l, err = m.store.Lease(ctx, l.ID); err != nil {
		return l, err
	}
	switch l.State {
	case market.LeaseCreating:
		return l, market.Errorf(market.ECONFLICT, "lease %s is still being created", l.ID)
	case market.LeaseEnded:
		return l, market.Errorf(market.ENOTFOUND, "lease %s has ended", l.ID)
	}
	return l, fn(l)
}

// deallocate removes owner's lease.
func (m *leaseManager) deallocate(ctx context.Context, owner market.LeaseOwner) (market.Lease, error) {
	var ended market.Lease
	_, err := m.withLease(ctx, owner, func(l market.Lease) error {
		var err error
		ended, err = m.endLocked(ctx, l, market.EndDeallocated)
		return err
	})
	return ended, err
}

// endLocked removes a lease's container and ends it; the caller holds the
// lease's operation lock. When the runtime cannot remove the container the
// lease stays as it is and the error is returned.
func (m *leaseManager) endLocked(ctx context.Context, l market.Lease, reason string) (market.Lease, error) {
	if err := m.rt.Remove(ctx, l.ID); err != nil {
		if market.ErrorCode(err) == market.EUNAVAILABLE {
			m.setRuntimeUp(false, err)
		}
		return l, fmt.Errorf("remove container of lease %s: %w", l.ID, err)
	}
	ended, err := m.store.EndLease(ctx, l.ID, reason, m.cfg.Now())
	if err != nil {
		return l, fmt.Errorf("end lease %s: %w", l.ID, err)
	}
	m.metrics.leaseEnded(reason)
	m.log.Info("lease ended", "lease", l.ID, "owner", l.Owner.Hotkey, "reason", reason)
	m.disk.forget(l.ID)
	m.releaseNetwork(ctx)
	m.wake()
	return ended, nil
}

// extend moves owner's lease's expiry to at least until.
func (m *leaseManager) extend(ctx context.Context, owner market.LeaseOwner, until time.Time) (market.Lease, error) {
	var out market.Lease
	_, err := m.withLease(ctx, owner, func(l market.Lease) error {
		var err error
		if out, err = m.store.ExtendLease(ctx, l.ID, until); err != nil {
			return fmt.Errorf("extend lease %s: %w", l.ID, err)
		}
		m.log.Info("lease extended", "lease", l.ID, "expires", out.ExpiresAt.Format(time.RFC3339))
		m.wake()
		return nil
	})
	return out, err
}

// act runs a docker action on owner's lease; keys are the new keys of
// exchange_key.
func (m *leaseManager) act(ctx context.Context, owner market.LeaseOwner, action string, keys []ssh.PublicKey) (market.Lease, error) {
	return m.withLease(ctx, owner, func(l market.Lease) error {
		var err error
		switch action {
		case actionRestart:
			err = m.rt.Restart(ctx, l.ID)
		case actionPause:
			err = m.rt.Pause(ctx, l.ID)
		case actionUnpause:
			err = m.rt.Unpause(ctx, l.ID)
		case actionExchangeKey:
			err = m.rt.SetAuthorizedKeys(ctx, l.ID, keys)
		default:
			return market.Errorf(market.EINVALID, "unknown docker action")
		}
		if err != nil {
			return fmt.Errorf("%s lease %s: %w", action, l.ID, err)
		}
		m.log.Info("lease action", "lease", l.ID, "action", action)
		return nil
	})
}

// Docker actions after SN27's aliases are folded.
const (
	actionRestart     = "restart"
	actionPause       = "pause"
	actionUnpause     = "unpause"
	actionExchangeKey = "exchange_key"
)
