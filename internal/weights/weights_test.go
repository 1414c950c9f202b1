package weights

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/tlock"
)

func quicknet() subnet.Beacon {
	q := tlock.Quicknet()
	return subnet.Beacon{PublicKey: q.PublicKey, Genesis: q.Genesis, Period: q.Period}
}

// TestPlanRevealByBlock works the SDK's generate_commit arithmetic
// (bittensor-drand: epoch = (block + netuid + 1) / (tempo + 1), first
// reveal block = reveal_epoch·(tempo + 1) − (netuid + 1), + 3 blocks, 12 s
// a block, quicknet genesis 1692803367 and period 3 s) by hand.
func TestPlanRevealByBlock(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name              string
		netuid            subnet.NetUID
		tempo             uint16
		block, period     uint64
		now               int64
		commit, reveal    uint64
		revealBlock, want uint64
	}{
		// (500+101)/51 = 11; 13·51 − 101 = 562; 565 − 500 = 65 blocks =
		// 780 s; (1700000000 + 780 − 1692803367)/3 = 2399137.67.
		{"sdk test parameters", 100, 50, 500, 2, 1_700_000_000, 11, 13, 562, 2_399_137},
		// SN27 at finney block 6852690: (6852690+28)/361 = 18982;
		// 18983·361 − 28 = 6852835; 148 blocks = 1776 s;
		// (1750000000 + 1776 − 1692803367)/3 = 19066136.33.
		{"netuid 27 on finney", 27, 360, 6_852_690, 1, 1_750_000_000, 18982, 18983, 6_852_835, 19_066_136},
	} {
		cr := subnet.CommitReveal{NetUID: tc.netuid, Enabled: true, RevealPeriodEpochs: tc.period, Version: 4,
			Tempo: tc.tempo, Block: tc.block, BlockTime: 12 * time.Second, Beacon: quicknet()}
		p, err := PlanReveal(cr, time.Unix(tc.now, 0))
		if err != nil {
			t.Fatal(err)
		}
		want := Plan{CommitEpoch: tc.commit, RevealEpoch: tc.reveal, RevealBlock: tc.revealBlock, Round: tc.want}
		if p != want {
			t.Errorf("%s: %+v, want %+v", tc.name, p, want)
		}
		if CurrentEpoch(cr) != tc.commit {
			t.Errorf("%s: current epoch %d", tc.name, CurrentEpoch(cr))
		}
	}
}

// TestPlanRevealCounted works generate_commit_v2's predict_first_reveal_block
// (runtimes with SubnetEpochIndex) by hand, at 12 s a block and
// now = 1700000000.
func TestPlanRevealCounted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name              string
		s                 subnet.EpochSchedule
		tempo             uint16
		block             uint64
		revealBlock, want uint64
	}{
		// The next epoch runs 50 blocks after the last, at 60; 63 − 10 =
		// 53 blocks = 636 s; 7197269/3 = 2399089.67.
		{"tempo from the last epoch", subnet.EpochSchedule{LastEpochBlock: 10}, 50, 10, 60, 2_399_089},
		// An owner-triggered epoch pending at 95 runs first; 98 − 91 = 7
		// blocks = 84 s; 7196717/3 = 2398905.67.
		{"pending epoch", subnet.EpochSchedule{LastEpochBlock: 80, PendingEpochAt: 95}, 20, 91, 95, 2_398_905},
		// Epoch 42 began at 1000; 43 begins at 1360; 1363 − 1010 = 353
		// blocks = 4236 s; 7200869/3 = 2400289.67.
		{"mid tempo", subnet.EpochSchedule{LastEpochBlock: 1000, EpochIndex: 42, BlocksSinceLastStep: 10}, 360, 1010, 1360, 2_400_289},
	} {
		s := tc.s
		cr := subnet.CommitReveal{Enabled: true, RevealPeriodEpochs: 1, Version: 4, Tempo: tc.tempo, Block: tc.block,
			BlockTime: 12 * time.Second, Schedule: &s, Beacon: quicknet()}
		p, err := PlanReveal(cr, time.Unix(1_700_000_000, 0))
		if err != nil {
			t.Fatal(err)
		}
		if p.RevealBlock != tc.revealBlock || p.Round != tc.want || p.RevealEpoch != p.CommitEpoch+1 {
			t.Errorf("%s: %+v, want reveal block %d round %d", tc.name, p, tc.revealBlock, tc.want)
		}
	}
	if _, err := PlanReveal(subnet.CommitReveal{Enabled: true, Beacon: quicknet()}, time.Now()); subnet.ErrorCode(err) != subnet.EINVALID {
		t.Errorf("tempo 0: %v", err)
	}
	early, err := PlanReveal(subnet.CommitReveal{Tempo: 10, Beacon: quicknet(), BlockTime: time.Second}, time.Unix(0, 0))
	if err != nil || early.Round != 1 {
		t.Errorf("before genesis: %+v, %v", early, err)
	}
}

// fakeChain records submissions.
type fakeChain struct {
	cr      subnet.CommitReveal
	set     int
	commit  []byte
	round   uint64
	version uint16
}

func (f *fakeChain) SetWeights(context.Context, subnet.Signer, subnet.NetUID, []subnet.UID, []uint16, uint64) error {
	f.set++
	return nil
}

func (f *fakeChain) CommitReveal(context.Context, subnet.NetUID) (subnet.CommitReveal, error) {
	return f.cr, nil
}

func (f *fakeChain) CommitTimelockedWeights(_ context.Context, _ subnet.Signer, _ subnet.NetUID, c []byte, r uint64, v uint16) error {
	f.commit, f.round, f.version = c, r, v
	return nil
}

func TestSubmitChoosesThePath(t *testing.T) {
	t.Parallel()
	hot, err := keys.FromURI("//Alice")
	if err != nil {
		t.Fatal(err)
	}
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], 9)
	beaconKey, err := tlock.GenerateKey(rand.NewChaCha8(seed))
	if err != nil {
		t.Fatal(err)
	}
	beacon := subnet.Beacon{PublicKey: beaconKey.PublicKey(), Genesis: time.Unix(1_000, 0), Period: time.Second}
	uids, vals := []subnet.UID{0, 3}, []uint16{65535, 120}
	now := func() time.Time { return time.Unix(2_000, 0) }

	off := &fakeChain{cr: subnet.CommitReveal{Tempo: 10, Block: 50, BlockTime: time.Second, Beacon: beacon}}
	res, err := (&Submitter{Chain: off, Now: now}).Submit(t.Context(), hot, 1, uids, vals, 7)
	if err != nil || res.Mode != ModeSet || off.set != 1 || off.commit != nil {
		t.Fatalf("commit-reveal off: %+v %v, %d sets", res, err, off.set)
	}

	on := &fakeChain{cr: subnet.CommitReveal{NetUID: 1, Enabled: true, RevealPeriodEpochs: 1, Version: 4, Tempo: 10, Block: 50,
		BlockTime: time.Second, Schedule: &subnet.EpochSchedule{LastEpochBlock: 45, EpochIndex: 4}, Beacon: beacon}}
	res, err = (&Submitter{Chain: on, Now: now}).Submit(t.Context(), hot, 1, uids, vals, 7)
	if err != nil || res.Mode != ModeCommit || on.set != 0 {
		t.Fatalf("commit-reveal on: %+v %v", res, err)
	}
	// Epoch 5 starts at block 55; 58 − 50 = 8 s after 2000 s is round 1008
	// of a beacon that began at 1000 s with one round a second.
	if res.Plan != (Plan{CommitEpoch: 4, RevealEpoch: 5, RevealBlock: 55, Round: 1008}) || on.round != 1008 || on.version != 4 {
		t.Fatalf("plan %+v, submitted round %d version %d", res.Plan, on.round, on.version)
	}
	plain, err := tlock.Decrypt(on.commit, beaconKey.Sign(1008))
	if err != nil {
		t.Fatal(err)
	}
	p, err := subnet.DecodeWeightsPayload(plain)
	if err != nil {
		t.Fatal(err)
	}
	want := subnet.WeightsPayload{Hotkey: hot.PublicKey(), UIDs: uids, Values: vals, VersionKey: 7}
	if !reflect.DeepEqual(p, want) || !bytes.Equal(p.Hotkey, hot.PublicKey()) {
		t.Fatalf("payload %+v", p)
	}
	if _, err := tlock.Decrypt(on.commit, beaconKey.Sign(1007)); err == nil {
		t.Fatal("the commit opens with the previous round's signature")
	}

	v3 := &fakeChain{cr: on.cr}
	v3.cr.Version = 3
	if _, err := (&Submitter{Chain: v3}).Submit(t.Context(), hot, 1, uids, vals, 7); subnet.ErrorCode(err) != subnet.EINVALID || v3.commit != nil {
		t.Fatalf("version 3: %v", err)
	}
	if _, err := (&Submitter{Chain: on}).Submit(t.Context(), hot, 1, uids, vals[:1], 7); subnet.ErrorCode(err) != subnet.EINVALIDWEIGHTS {
		t.Fatalf("length mismatch: %v", err)
	}
}
