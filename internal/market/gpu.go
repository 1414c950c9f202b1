package market

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// GPUModel is one row of the GPU reference table.
type GPUModel struct {
	// Name is the model name as the NVIDIA driver reports it
	// ("NVIDIA H100 80GB HBM3").
	Name string
	// FP16TFLOPS is the rate, in 10¹² multiply-adds×2 per second, the model
	// reaches on the Proof-of-GPU multiplication (fp16 inputs, fp32
	// accumulation). The validator's wall-clock bound derives from it.
	FP16TFLOPS float64
	// FP32TFLOPS is informational (tensor cores fake it with TF32).
	FP32TFLOPS float64
	// MemoryBytes is the device memory the driver reports.
	MemoryBytes uint64
	// MemoryBandwidth is the datasheet memory bandwidth in bytes per
	// second, 0 when the table does not give it. The Proof-of-GPU
	// residency round's time bound derives from it.
	MemoryBandwidth float64
	// BaseScore is the score of one verified GPU of this model.
	BaseScore float64
	// TolerancePair names a model a benchmark cannot tell apart from this
	// one, or is empty.
	TolerancePair string
}

// GPUTable is the GPU reference table: immutable once loaded, safe for
// concurrent use.
type GPUTable struct {
	models []GPUModel     // sorted by name
	byName map[string]int // exact name → index
	byFold map[string]int // lower-cased, space-collapsed name → index
	best   float64        // highest base score
}

//go:embed gpus.yaml
var defaultGPUTableYAML []byte

// DefaultGPUTableYAML returns the embedded reference table's YAML text.
func DefaultGPUTableYAML() []byte { return bytes.Clone(defaultGPUTableYAML) }

// DefaultGPUTable parses the embedded reference table. The embedded table is
// valid (a test checks it), so DefaultGPUTable panics only on a broken build.
func DefaultGPUTable() *GPUTable {
	t, err := ParseGPUTable(defaultGPUTableYAML)
	if err != nil {
		panic(fmt.Sprintf("embedded GPU table: %v", err))
	}
	return t
}

// LoadGPUTable reads the table from path, or returns the embedded table when
// path is empty. Errors carry the code EINVALID for a malformed file.
func LoadGPUTable(path string) (*GPUTable, error) {
	if path == "" {
		return DefaultGPUTable(), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open GPU table: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxGPUTableBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read GPU table %s: %w", path, err)
	}
	if len(b) > maxGPUTableBytes {
		return nil, Errorf(EINVALID, "GPU table %s: larger than %d bytes", path, maxGPUTableBytes)
	}
	t, err := ParseGPUTable(b)
	if err != nil {
		return nil, fmt.Errorf("GPU table %s: %w", path, err)
	}
	return t, nil
}

const (
	maxGPUTableBytes  = 1 << 20
	maxGPUTableModels = 1000
	maxGPUNameLen     = 128
)

// gpuTableFile is the YAML shape (the original's config.yaml layout).
type gpuTableFile struct {
	Performance *struct {
		FP16   map[string]float64 `yaml:"GPU_TFLOPS_FP16"`
		FP32   map[string]float64 `yaml:"GPU_TFLOPS_FP32"`
		Memory map[string]float64 `yaml:"GPU_MEMORY_MIB"`
		// Bandwidth is the datasheet memory bandwidth in GB/s (optional).
		Bandwidth map[string]float64 `yaml:"GPU_MEMORY_BANDWIDTH_GBPS"`
		// AVRAM is the original's allocation-probe size; accepted, unused.
		AVRAM  map[string]float64 `yaml:"GPU_AVRAM"`
		Pairs  map[string]string  `yaml:"gpu_tolerance_pairs"`
		Scores map[string]float64 `yaml:"gpu_scores"`
	} `yaml:"gpu_performance"`
}

// ParseGPUTable parses a table in the YAML shape of gpus.yaml. Every model
// needs an fp16 rate and a memory size; a missing fp32 rate or score is 0.
// Unknown keys, names used in one section but not in GPU_TFLOPS_FP16,
// non-positive rates or memory, negative scores and pairs naming unknown
// models are EINVALID errors. GPU_MEMORY_BANDWIDTH_GBPS is optional per
// model.
func ParseGPUTable(b []byte) (*GPUTable, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f gpuTableFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errorf(EINVALID, "empty GPU table")
		}
		return nil, Errorf(EINVALID, "parse GPU table: %v", err)
	}
	p := f.Performance
	if p == nil || len(p.FP16) == 0 {
		return nil, Errorf(EINVALID, "GPU table has no gpu_performance.GPU_TFLOPS_FP16 models")
	}
	if len(p.FP16) > maxGPUTableModels {
		return nil, Errorf(EINVALID, "GPU table has %d models, at most %d", len(p.FP16), maxGPUTableModels)
	}
	check := func(section string, names []string) error {
		for _, name := range names {
			if _, ok := p.FP16[name]; !ok {
				return Errorf(EINVALID, "GPU table: %s names %q, which has no GPU_TFLOPS_FP16 entry", section, name)
			}
		}
		return nil
	}
	for _, s := range []struct {
		name string
		m    map[string]float64
	}{{"GPU_TFLOPS_FP32", p.FP32}, {"GPU_MEMORY_MIB", p.Memory}, {"GPU_MEMORY_BANDWIDTH_GBPS", p.Bandwidth}, {"GPU_AVRAM", p.AVRAM}, {"gpu_scores", p.Scores}} {
		if err := check(s.name, keys(s.m)); err != nil {
			return nil, err
		}
	}
	pairNames := make([]string, 0, 2*len(p.Pairs))
	for a, b := range p.Pairs {
		pairNames = append(pairNames, a, b)
	}
	if err := check("gpu_tolerance_pairs", pairNames); err != nil {
		return nil, err
	}

	t := &GPUTable{byName: map[string]int{}, byFold: map[string]int{}}
	for _, name := range keys(p.FP16) {
		if name == "" || len(name) > maxGPUNameLen {
			return nil, Errorf(EINVALID, "GPU table: model name %q is empty or longer than %d bytes", name, maxGPUNameLen)
		}
		m := GPUModel{
			Name:          name,
			FP16TFLOPS:    p.FP16[name],
			FP32TFLOPS:    p.FP32[name],
			BaseScore:     p.Scores[name],
			TolerancePair: p.Pairs[name],
		}
		if !(m.FP16TFLOPS > 0) || math.IsInf(m.FP16TFLOPS, 0) || m.FP16TFLOPS > 1e6 {
			return nil, Errorf(EINVALID, "GPU table: %s: GPU_TFLOPS_FP16 must be in (0, 1e6], got %v", name, m.FP16TFLOPS)
		}
		if m.FP32TFLOPS < 0 || math.IsNaN(m.FP32TFLOPS) || math.IsInf(m.FP32TFLOPS, 0) {
			return nil, Errorf(EINVALID, "GPU table: %s: GPU_TFLOPS_FP32 must be finite and non-negative, got %v", name, m.FP32TFLOPS)
		}
		mib, ok := p.Memory[name]
		if !ok {
			return nil, Errorf(EINVALID, "GPU table: %s has no GPU_MEMORY_MIB entry", name)
		}
		if !(mib > 0) || mib > 1<<24 {
			return nil, Errorf(EINVALID, "GPU table: %s: GPU_MEMORY_MIB must be in (0, 2^24], got %v", name, mib)
		}
		m.MemoryBytes = uint64(mib * (1 << 20))
		if bw, ok := p.Bandwidth[name]; ok {
			if !(bw > 0) || bw > 1e6 {
				return nil, Errorf(EINVALID, "GPU table: %s: GPU_MEMORY_BANDWIDTH_GBPS must be in (0, 1e6], got %v", name, bw)
			}
			m.MemoryBandwidth = bw * 1e9
		}
		if m.BaseScore < 0 || math.IsNaN(m.BaseScore) || math.IsInf(m.BaseScore, 0) || m.BaseScore > 1e6 {
			return nil, Errorf(EINVALID, "GPU table: %s: gpu_scores must be in [0, 1e6], got %v", name, m.BaseScore)
		}
		fold := foldGPUName(name)
		if j, dup := t.byFold[fold]; dup {
			return nil, Errorf(EINVALID, "GPU table: models %q and %q differ only in case or spacing", t.models[j].Name, name)
		}
		t.byName[name] = len(t.models)
		t.byFold[fold] = len(t.models)
		t.models = append(t.models, m)
		t.best = max(t.best, m.BaseScore)
	}
	return t, nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// foldGPUName is the name key for lookups that ignore case and repeated or
// surrounding spaces ("NVIDIA L40S" finds "NVIDIA L40s").
func foldGPUName(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(s), " "))
}

// Lookup returns the model named name: an exact match, else one that differs
// only in case or spacing; ok is false if there is none.
func (t *GPUTable) Lookup(name string) (GPUModel, bool) {
	if i, ok := t.byName[name]; ok {
		return t.models[i], true
	}
	if i, ok := t.byFold[foldGPUName(name)]; ok {
		return t.models[i], true
	}
	return GPUModel{}, false
}

// Models returns every model, sorted by name.
func (t *GPUTable) Models() []GPUModel { return append([]GPUModel(nil), t.models...) }

// BestScore returns the highest base score in the table.
func (t *GPUTable) BestScore() float64 { return t.best }
