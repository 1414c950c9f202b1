package dashboard

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"
)

// ValidatorData is what the validator's page shows; the validator command
// fills it from the running service, its store and the chain.
type ValidatorData struct {
	NetUID      uint16
	Block       uint64
	Tempo       uint16 // 0: unknown
	UID         uint16
	Hotkey      string
	Permit      bool
	ChainOK     bool
	LastSweep   uint64
	Sweeping    bool
	PoGInterval uint64
	NextWeights uint64
	Weights     Weights
	Miners      []MinerRow
	// Scores are the scores behind past weights submissions.
	Scores []ScorePoint
	// Incentives are sampled metagraphs: values keyed by uid ("3").
	Incentives []Sample
	// Results are the kept Proof-of-GPU results.
	Results []ResultPoint
}

// Weights is the outcome of the last weights submission.
type Weights struct {
	Mode, Result, Error string
	Block, LastOK       uint64
	At                  time.Time
	// Summary says what became of it (committed for reveal in round R,
	// revealed by the chain, …).
	Summary string
}

// MinerRow is one miner of the validator's table.
type MinerRow struct {
	UID        uint16
	Hotkey     string
	GPUs       string
	Score      float64
	Incentive  float64
	Rented     bool
	LastResult string // pass, fail, unreachable, "" (never tested)
	LastBlock  uint64
	Reason     string
}

// ScorePoint is one miner's score in the submission made at Block.
type ScorePoint struct {
	Block uint64
	UID   uint16
	Score float64
}

// ResultPoint is one Proof-of-GPU result: the sweep's block and the
// outcome.
type ResultPoint struct {
	Block   uint64
	Outcome string
}

// NewValidator returns the validator page handler; data is called for
// every request.
func NewValidator(data func(context.Context) (*ValidatorData, error), opt Options) http.Handler {
	opt.setDefaults()
	return &handler{opt: opt, tmpl: parse("validator.html"), build: func(r *http.Request) (page, error) {
		d, err := data(r.Context())
		if err != nil {
			return page{}, err
		}
		return page{
			Title:    fmt.Sprintf("nicompute validator · subnet %d", d.NetUID),
			Subtitle: fmt.Sprintf("uid %d · block %d", d.UID, d.Block),
			Data:     d,
			Charts:   subnetCharts(d.Scores, d.Incentives, d.Results),
		}, nil
	}}
}

// subnetCharts draws the scores behind each weights submission, the
// sampled incentives and the Proof-of-GPU results by sweep.
func subnetCharts(scorePoints []ScorePoint, incentiveSamples []Sample, resultPoints []ResultPoint) []Chart {
	// Scores: one line per uid over the submission blocks.
	var blocks []uint64
	byUID := map[uint16]map[uint64]float64{}
	seen := map[uint64]bool{}
	for _, p := range scorePoints {
		if !seen[p.Block] {
			seen[p.Block] = true
			blocks = append(blocks, p.Block)
		}
		if byUID[p.UID] == nil {
			byUID[p.UID] = map[uint64]float64{}
		}
		byUID[p.UID][p.Block] = p.Score
	}
	sort.Slice(blocks, func(i, j int) bool { return blocks[i] < blocks[j] })
	var uids []uint16
	for u := range byUID {
		uids = append(uids, u)
	}
	sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
	var scoreSeries []Series
	for _, u := range uids {
		s := Series{Name: "uid " + strconv.Itoa(int(u)), Values: make([]float64, len(blocks))}
		for i, b := range blocks {
			v, ok := byUID[u][b]
			if !ok {
				v = math.NaN()
			}
			s.Values[i] = v
		}
		scoreSeries = append(scoreSeries, s)
	}
	scores := lineChart("Score by miner (at each weights submission)", blockLabels(blocks), scoreSeries, "")

	incentives := sampledChart("Incentive by miner", incentiveSamples, func(k string) string { return "uid " + k }, "")

	// Proof-of-GPU results: counts per sweep block, stacked by outcome.
	counts := map[uint64]map[string]float64{}
	var rblocks []uint64
	for _, r := range resultPoints {
		if counts[r.Block] == nil {
			counts[r.Block] = map[string]float64{}
			rblocks = append(rblocks, r.Block)
		}
		counts[r.Block][r.Outcome]++
	}
	sort.Slice(rblocks, func(i, j int) bool { return rblocks[i] < rblocks[j] })
	var resSeries []Series
	for _, o := range []string{"pass", "fail", "unreachable"} {
		s := Series{Name: o, Values: make([]float64, len(rblocks))}
		for i, b := range rblocks {
			s.Values[i] = counts[b][o]
		}
		resSeries = append(resSeries, s)
	}
	results := stackedBars("Proof-of-GPU results by sweep", blockLabels(rblocks), resSeries)
	return []Chart{scores, incentives, results}
}

// sampledChart draws the keys of the samples (only those of only, when
// given) as lines over their blocks.
func sampledChart(title string, samples []Sample, name func(string) string, unit string, only ...string) Chart {
	keys := map[string]bool{}
	blocks := make([]uint64, len(samples))
	for i, s := range samples {
		blocks[i] = s.Block
		for k := range s.Values {
			if len(only) == 0 || slices.Contains(only, k) {
				keys[k] = true
			}
		}
	}
	var ks []string
	for k := range keys {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		a, errA := strconv.Atoi(ks[i])
		b, errB := strconv.Atoi(ks[j])
		if errA == nil && errB == nil {
			return a < b
		}
		return ks[i] < ks[j]
	})
	var series []Series
	for _, k := range ks {
		s := Series{Name: name(k), Values: make([]float64, len(samples))}
		for i, smp := range samples {
			v, ok := smp.Values[k]
			if !ok {
				v = math.NaN()
			}
			s.Values[i] = v
		}
		series = append(series, s)
	}
	return lineChart(title, blockLabels(blocks), series, unit)
}

func blockLabels(blocks []uint64) []string {
	out := make([]string, len(blocks))
	for i, b := range blocks {
		out[i] = strconv.FormatUint(b, 10)
	}
	return out
}
