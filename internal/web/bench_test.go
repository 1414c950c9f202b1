package web_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/rental/rentaltest"
	"github.com/nicompute/nicompute/internal/subnet"
)

// BenchmarkOffers measures GET /v1/offers over loopback HTTP on a subnet
// of 256 verified miners (four models, 1 to 8 GPUs, specs with free
// resources, four results each in the validator's SQLite), and reports the
// median and 99th percentile latency.
func BenchmarkOffers(b *testing.B) {
	a := newAPI(b, rentaltest.Options{Config: rental.Config{VerifiedTTL: rental.DefaultVerifiedTTL}}, nil)
	ctx := context.Background()
	models := []string{"NVIDIA H200", "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA GeForce RTX 4090"}
	neurons := []subnet.Neuron{{UID: 0, Hotkey: a.w.Hotkey.SS58()}}
	specs := map[string]market.Specs{}
	for i := 1; i <= 256; i++ {
		hk := fmt.Sprintf("5Miner%042d", i)
		neurons = append(neurons, subnet.Neuron{UID: subnet.UID(i), Hotkey: hk,
			Axon: subnet.AxonInfo{IP: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), Port: 8091, Protocol: 4}})
		count := 1 << (i % 4)
		for k := range 4 {
			r := market.PoGResult{Hotkey: hk, UID: subnet.UID(i), Block: uint64(k), At: time.Now(), Outcome: market.PoGPass, Model: models[i%4], Count: count}
			if k == 0 && i%10 == 0 {
				r.Outcome = market.PoGUnreachable
			}
			if err := a.w.Validator.AddResult(ctx, r, 16); err != nil {
				b.Fatal(err)
			}
		}
		gpus := make([]string, count)
		specs[hk] = market.Specs{Free: &market.Resources{GPUs: gpus, CPUs: 32, MemoryBytes: 256 << 30, DiskBytes: 1 << 40}}
	}
	if err := a.w.Validator.SaveSpecs(ctx, specs, time.Now()); err != nil {
		b.Fatal(err)
	}
	a.w.Chain.Set(neurons...)
	_, tok := a.w.Token(b, "bench", market.ScopeRead)
	client := a.srv.Client()
	get := func() {
		req, _ := http.NewRequest("GET", a.srv.URL+"/v1/offers", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("offers: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	get()
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		get()
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds()), "p99-µs")
}
