package subtensor

import (
	"fmt"
	"strings"
	"testing"
)

func TestZZListCalls(t *testing.T) {
	rec := loadRecordings(t)
	m := metadataV15(t, rec)
	p, _ := m.pallet(subtensorPallet)
	ct := &m.types[p.calls]
	for _, v := range ct.variants {
		if strings.Contains(strings.ToLower(v.name), "commit") || strings.Contains(v.name, "weights") {
			var fs []string
			for _, f := range v.fields {
				fs = append(fs, fmt.Sprintf("%s:%v", f.name, describeT(m, f.typ)))
			}
			fmt.Println(v.index, v.name, fs)
		}
	}
	for _, name := range []string{"CommitRevealWeightsEnabled", "RevealPeriodEpochs", "CommitRevealWeightsVersion", "TimelockedWeightCommits", "CRV3WeightCommits", "CRV3WeightCommitsV2", "LastUpdate", "Weights", "Tempo", "BlocksSinceLastStep", "LastMechansimStepBlock", "LastMechanismStepBlock", "PendingEmission", "WeightsSetRateLimit"} {
		e, ok := p.storage[name]
		fmt.Println(name, ok, e != nil && ok)
		if ok {
			fmt.Println("  hashers", e.hashers, "keys", e.keys, "value", describeT(m, e.value), "def", e.def)
		}
	}
	dp, err := m.pallet("Drand")
	fmt.Println("drand", err)
	if dp != nil {
		for k := range dp.storage {
			fmt.Println(" drand storage", k, describeT(m, dp.storage[k].value))
		}
	}
	// errors
	et := &m.types[p.errors]
	for _, v := range et.variants {
		if strings.Contains(v.name, "Commit") || strings.Contains(v.name, "Reveal") || strings.Contains(v.name, "Weight") {
			fmt.Println("err", v.index, v.name, v.docs)
		}
	}
}

func describeT(m *Metadata, id uint32) string {
	t := &m.types[id]
	switch t.kind {
	case kindSequence:
		return "Vec<" + describeT(m, t.elem) + ">"
	case kindPrimitive:
		return fmt.Sprint("prim", t.prim)
	case kindCompact:
		return "Compact<" + describeT(m, t.elem) + ">"
	case kindArray:
		return fmt.Sprintf("[%s;%d]", describeT(m, t.elem), t.length)
	case kindComposite:
		s := strings.Join(t.path, "::") + "{"
		for _, f := range t.fields {
			s += f.name + ":" + describeT(m, f.typ) + ","
		}
		return s + "}"
	case kindTuple:
		s := "("
		for _, e := range t.tuple {
			s += describeT(m, e) + ","
		}
		return s + ")"
	}
	return strings.Join(t.path, "::")
}
