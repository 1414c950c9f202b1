package subtensor

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/tlock"
	"github.com/nicompute/nicompute/internal/weights"
)

// commitCall is the expected SCALE call of commit_timelocked_weights in
// runtime 343: pallet SubtensorModule (7), call index 113 (0x71), netuid
// u16, commit as a BoundedVec<u8> (compact length), reveal_round u64,
// commit_reveal_version u16.
func commitCall(netuid uint16, commit []byte, round uint64, version uint16) []byte {
	b := []byte{7, 113}
	b = binary.LittleEndian.AppendUint16(b, netuid)
	b = appendCompact(b, uint64(len(commit)))
	b = append(b, commit...)
	b = binary.LittleEndian.AppendUint64(b, round)
	return binary.LittleEndian.AppendUint16(b, version)
}

func TestCommitCallMatchesMetadata(t *testing.T) {
	m := metadataV15(t, loadRecordings(t))
	pi, v, err := m.call(subtensorPallet, "commit_timelocked_weights")
	if err != nil || pi != 7 || v.index != 113 {
		t.Fatalf("commit_timelocked_weights = pallet %d call %+v, %v", pi, v, err)
	}
	var names []string
	for _, f := range v.fields {
		names = append(names, f.name+":"+m.types[f.typ].name())
	}
	if got := strings.Join(names, " "); got != "netuid: commit:BoundedVec reveal_round: commit_reveal_version:" {
		t.Fatalf("arguments %s", got)
	}
	commit := []byte{0xaa, 0xbb, 0xcc}
	got, err := m.encodeCall(subtensorPallet, "commit_timelocked_weights", map[string]any{
		"netuid": uint64(27), "commit": commit, "reveal_round": uint64(19_066_136), "commit_reveal_version": uint64(4)})
	if err != nil {
		t.Fatal(err)
	}
	// 07 71 | 1b00 | 0c aabbcc | 18ed220100000000 | 0400
	if want := "07711b000caabbcc18ed2201000000000400"; hex.EncodeToString(got) != want {
		t.Fatalf("call %x, want %s", got, want)
	}
	if mi, mv, err := m.call(subtensorPallet, "commit_timelocked_mechanism_weights"); err != nil || mi != 7 || mv.index != 118 {
		t.Fatalf("mechanism variant: %v", err)
	}
}

// scriptedCR serves the storage of a subnet with commit-reveal on.
func scriptedCR(t *testing.T) (*Client, *scriptedNode) {
	c, s := newScriptedNode(t)
	c.cfg.InclusionTimeout = 300 * time.Millisecond
	s.set("NetworksAdded", "0x01", uint64(27))
	s.set("CommitRevealWeightsEnabled", "0x01", uint64(27))
	s.set("Tempo", "0x6801", uint64(27)) // 360
	return c, s
}

func TestCommitRevealSettings(t *testing.T) {
	c, _ := scriptedCR(t)
	cr, err := c.CommitReveal(t.Context(), 27)
	if err != nil {
		t.Fatal(err)
	}
	q := tlock.Quicknet()
	// RevealPeriodEpochs and CommitRevealWeightsVersion are absent: their
	// defaults (1 and 4) apply. Runtime 343 keeps no epoch counter, and
	// its Aura slot is 12 s. The scripted head is block 0x689052.
	if !cr.Enabled || cr.RevealPeriodEpochs != 1 || cr.Version != 4 || cr.Tempo != 360 || cr.Block != 6_852_690 ||
		cr.Schedule != nil || cr.BlockTime != 12*time.Second || !bytes.Equal(cr.Beacon.PublicKey, q.PublicKey) ||
		!cr.Beacon.Genesis.Equal(q.Genesis) || cr.Beacon.Period != 3*time.Second || cr.NetUID != 27 {
		t.Fatalf("%+v", cr)
	}
	if _, err := c.CommitReveal(t.Context(), 9); subnet.ErrorCode(err) != subnet.ENOSUBNET {
		t.Fatalf("no subnet: %v", err)
	}
	h, err := c.Hyperparameters(t.Context(), 27)
	if err != nil || !h.CommitRevealEnabled || h.RevealPeriodEpochs != 1 {
		t.Fatalf("hyperparameters %+v, %v", h, err)
	}
}

// TestCommitOnFinney submits what a validator sends to netuid 27 at a wall
// clock chosen so that the SDK's arithmetic targets quicknet round 1000,
// whose signature drand published: the commit on the wire decrypts with it
// to the payload naming the hotkey.
func TestCommitOnFinney(t *testing.T) {
	c, s := scriptedCR(t)
	k := alice(t)
	// Block 6852690, tempo 360, netuid 27: the reveal epoch starts at
	// 6852835; +3 blocks is 148 blocks = 1776 s ahead; round 1000 is
	// published 2997 s after genesis.
	now := time.Unix(tlock.QuicknetGenesis+3000-1776+1, 0)
	sub := &weights.Submitter{Chain: c, Now: func() time.Time { return now }}
	res, err := sub.Submit(t.Context(), k, 27, []subnet.UID{0, 5}, []uint16{65535, 32768}, 21706)
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != weights.ModeCommit || res.Plan.Round != 1000 || res.Plan.RevealEpoch != 18983 {
		t.Fatalf("result %+v", res)
	}
	xt := s.lastSubmitted()
	i := bytes.Index(xt, []byte{7, 113, 27, 0})
	if i < 0 {
		t.Fatalf("no commit_timelocked_weights call for netuid 27 in %x", xt)
	}
	commit := xt[i+4+2 : len(xt)-10] // after the two-byte compact length
	s.checkSubmitted(t, k, commitCall(27, commit, 1000, 4))
	sig, _ := hex.DecodeString("b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125e342b73a8dd2bacbe47e4b6b63ed5e39")
	plain, err := tlock.Decrypt(commit, sig)
	if err != nil {
		t.Fatal(err)
	}
	p, err := subnet.DecodeWeightsPayload(plain)
	if err != nil || !bytes.Equal(p.Hotkey, k.PublicKey()) || !slices.Equal(p.Values, []uint16{65535, 32768}) || p.VersionKey != 21706 {
		t.Fatalf("payload %+v, %v", p, err)
	}
}

func TestCommitRefusals(t *testing.T) {
	k := alice(t)
	commit := bytes.Repeat([]byte{1}, 300)
	// DispatchError::Module { index 7, error [n, 0, 0, 0] }, variants of
	// runtime 343's SubtensorModule errors.
	for _, tc := range []struct {
		outcome, code, name string
	}{
		{"03 07 35000000", subnet.ECOMMITREVEALOFF, "CommitRevealDisabled"},
		{"03 07 4a000000", subnet.ERATELIMITED, "TooManyUnrevealedCommits"},
		{"03 07 4e000000", subnet.ERATELIMITED, "CommittingWeightsTooFast"},
		{"03 07 6d000000", subnet.EINVALID, "IncorrectCommitRevealVersion"},
		{"03 07 04000000", subnet.ENOTREGISTERED, "HotKeyNotRegisteredInSubNet"},
	} {
		c, s := scriptedCR(t)
		s.outcome = tc.outcome
		err := c.CommitTimelockedWeights(t.Context(), k, 27, commit, 1000, 4)
		if subnet.ErrorCode(err) != tc.code || !strings.Contains(err.Error(), "SubtensorModule."+tc.name) {
			t.Errorf("%s: %v (code %s), want %s", tc.name, err, subnet.ErrorCode(err), tc.code)
		}
	}
	c, s := scriptedCR(t)
	for _, bad := range [][]byte{nil, make([]byte, tlock.MaxCiphertextSize+1)} {
		if err := c.CommitTimelockedWeights(t.Context(), k, 27, bad, 1000, 4); subnet.ErrorCode(err) != subnet.EINVALID {
			t.Errorf("%d-byte commit: %v", len(bad), err)
		}
	}
	if n := len(s.node.Called("author_submitAndWatchExtrinsic")); n != 0 {
		t.Fatalf("%d submissions of refused commits", n)
	}
}

func TestWeightsRow(t *testing.T) {
	c, s := scriptedCR(t)
	s.set("Weights", "0x080000ffff05000080", uint64(27), uint64(3))
	uids, vals, err := c.Weights(t.Context(), 27, 3)
	if err != nil || !slices.Equal(uids, []subnet.UID{0, 5}) || !slices.Equal(vals, []uint16{65535, 32768}) {
		t.Fatalf("weights %v %v, %v", uids, vals, err)
	}
	if uids, _, err := c.Weights(t.Context(), 27, 4); err != nil || len(uids) != 0 {
		t.Fatalf("no row: %v %v", uids, err)
	}
}
