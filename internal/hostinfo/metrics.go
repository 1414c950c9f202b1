package hostinfo

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nicompute/nicompute/internal/market"
)

// GPUStats is one GPU's live readings. A reading the driver does not
// report ("[N/A]", "[Not Supported]") is NaN.
type GPUStats struct {
	Index int
	UUID  string
	Name  string
	// Utilization is the share of time a kernel ran, 0 to 1.
	Utilization float64
	// MemoryUsed and MemoryTotal are in bytes.
	MemoryUsed, MemoryTotal float64
	// Temperature is the GPU core's, in °C; Power the board's draw in W.
	Temperature, Power float64
}

// statsQuery is the nvidia-smi query behind GPUStats: the specs' identity
// fields (index, uuid, name, memory.total) and the live readings.
const statsQuery = "--query-gpu=index,uuid,name,memory.total,utilization.gpu,memory.used,temperature.gpu,power.draw"

// Stats reads every GPU's utilisation, memory, temperature and power with
// nvidia-smi (an argument vector, never a shell).
func (n NVML) Stats(ctx context.Context) ([]GPUStats, error) {
	out, err := n.query(ctx, statsQuery)
	if err != nil {
		return nil, err
	}
	return ParseGPUStats(out)
}

// ParseGPUStats parses the CSV of
// `nvidia-smi --query-gpu=index,uuid,name,memory.total,utilization.gpu,memory.used,temperature.gpu,power.draw --format=csv,noheader,nounits`:
// memory in MiB, utilisation in percent, temperature in °C, power in W.
func ParseGPUStats(b []byte) ([]GPUStats, error) {
	if len(b) > 1<<20 {
		return nil, errors.New("nvidia-smi output too large")
	}
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = 8
	r.TrimLeadingSpace = true
	var out []GPUStats
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parse nvidia-smi stats: %w", err)
		}
		if len(out) >= market.MaxGPUs*4 {
			return nil, errors.New("parse nvidia-smi stats: too many GPUs")
		}
		idx, err := strconv.Atoi(strings.TrimSpace(rec[0]))
		if err != nil || idx < 0 || idx > 1024 {
			return nil, fmt.Errorf("parse nvidia-smi stats: bad index %q", trunc(rec[0]))
		}
		uuid, name := strings.TrimSpace(rec[1]), strings.TrimSpace(rec[2])
		if name == "" || len(name) > 128 || len(uuid) > 128 {
			return nil, fmt.Errorf("parse nvidia-smi stats: bad name or uuid on line %d", len(out)+1)
		}
		s := GPUStats{Index: idx, UUID: uuid, Name: name}
		var bad string
		read := func(field string, lo, hi, scale float64) float64 {
			v, ok, err := reading(field)
			switch {
			case err != nil || (ok && (v < lo || v > hi)):
				bad = field
				return math.NaN()
			case !ok:
				return math.NaN()
			}
			return v * scale
		}
		s.MemoryTotal = read(rec[3], 0, market.MaxGPUMemoryMiB, 1<<20)
		s.Utilization = read(rec[4], 0, 100, 0.01)
		s.MemoryUsed = read(rec[5], 0, market.MaxGPUMemoryMiB, 1<<20)
		s.Temperature = read(rec[6], -50, 200, 1)
		s.Power = read(rec[7], 0, 10_000, 1)
		if bad != "" {
			return nil, fmt.Errorf("parse nvidia-smi stats: GPU %d: bad reading %q", idx, trunc(bad))
		}
		out = append(out, s)
	}
	return out, nil
}

// reading parses one numeric field; ok is false for the driver's
// "not available" markers.
func reading(field string) (v float64, ok bool, err error) {
	f := strings.TrimSpace(field)
	if strings.HasPrefix(f, "[") || f == "N/A" {
		return 0, false, nil
	}
	v, err = strconv.ParseFloat(f, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false, fmt.Errorf("not a number: %q", trunc(f))
	}
	return v, true, nil
}

// StatsProbe reads live GPU stats; NVML is the real one.
type StatsProbe interface {
	Stats(ctx context.Context) ([]GPUStats, error)
}

// GPUCollector exports a StatsProbe's readings as nicompute_gpu_* gauges
// labelled gpu (index), uuid and model, read at scrape time and cached
// for CacheFor, so scrapes in a burst run nvidia-smi once.
type GPUCollector struct {
	probe    StatsProbe
	timeout  time.Duration
	cacheFor time.Duration
	now      func() time.Time

	up, util, memUsed, memTotal, temp, power *prometheus.Desc

	// mu protects the cache.
	mu    sync.Mutex
	at    time.Time
	stats []GPUStats
	err   error
}

// NewGPUCollector returns a collector over p; each read is bounded by
// 10 s and reused for 5 s.
func NewGPUCollector(p StatsProbe) *GPUCollector {
	labels := []string{"gpu", "uuid", "model"}
	return &GPUCollector{
		probe: p, timeout: 10 * time.Second, cacheFor: 5 * time.Second, now: time.Now,
		up: prometheus.NewDesc("nicompute_gpu_probe_up", "1 when the last nvidia-smi read succeeded, 0 otherwise.", nil, nil),
		util: prometheus.NewDesc("nicompute_gpu_utilization_ratio",
			"Share of the last sample period a kernel ran on the GPU (0 to 1).", labels, nil),
		memUsed:  prometheus.NewDesc("nicompute_gpu_memory_used_bytes", "GPU memory in use.", labels, nil),
		memTotal: prometheus.NewDesc("nicompute_gpu_memory_total_bytes", "GPU memory installed.", labels, nil),
		temp:     prometheus.NewDesc("nicompute_gpu_temperature_celsius", "GPU core temperature.", labels, nil),
		power:    prometheus.NewDesc("nicompute_gpu_power_watts", "Board power draw.", labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *GPUCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.util, c.memUsed, c.memTotal, c.temp, c.power} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *GPUCollector) Collect(ch chan<- prometheus.Metric) {
	stats, err := c.read()
	up := 1.0
	if err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	for _, g := range stats {
		lv := []string{strconv.Itoa(g.Index), g.UUID, g.Name}
		for _, m := range []struct {
			d *prometheus.Desc
			v float64
		}{{c.util, g.Utilization}, {c.memUsed, g.MemoryUsed}, {c.memTotal, g.MemoryTotal}, {c.temp, g.Temperature}, {c.power, g.Power}} {
			if !math.IsNaN(m.v) {
				ch <- prometheus.MustNewConstMetric(m.d, prometheus.GaugeValue, m.v, lv...)
			}
		}
	}
}

// read returns the cached readings or probes again.
func (c *GPUCollector) read() ([]GPUStats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); c.at.IsZero() || now.Sub(c.at) >= c.cacheFor {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		c.stats, c.err = c.probe.Stats(ctx)
		cancel()
		c.at = now
	}
	return c.stats, c.err
}
