package docker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/moby/moby/api/types/jsonstream"
)

// TestPullTracker feeds the tracker the message sequence an engine sends
// while pulling a three-layer image of which one layer is already present.
func TestPullTracker(t *testing.T) {
	msg := func(id, status string, cur, total int64) jsonstream.Message {
		m := jsonstream.Message{ID: id, Status: status}
		if total > 0 {
			m.Progress = &jsonstream.Progress{Current: cur, Total: total}
		}
		return m
	}
	tr := newPullTracker()
	steps := []struct {
		m       jsonstream.Message
		changed bool
		want    PullProgress
	}{
		{msg("2.7.0-cuda12.6-cudnn9-runtime", "Pulling from pytorch/pytorch", 0, 0), false, PullProgress{}},
		{msg("aaa", "Already exists", 0, 0), true, PullProgress{Layers: 1, LayersDone: 1}},
		{msg("bbb", "Pulling fs layer", 0, 0), true, PullProgress{Layers: 2, LayersDone: 1}},
		{msg("ccc", "Waiting", 0, 0), true, PullProgress{Layers: 3, LayersDone: 1}},
		{msg("bbb", "Downloading", 100, 1000), true, PullProgress{Layers: 3, LayersDone: 1, Bytes: 100, BytesTotal: 1000}},
		{msg("ccc", "Downloading", 50, 500), true, PullProgress{Layers: 3, LayersDone: 1, Bytes: 150, BytesTotal: 1500}},
		{msg("ccc", "Retrying in 5 seconds", 0, 0), true, PullProgress{Layers: 3, LayersDone: 1, Bytes: 100, BytesTotal: 1500}},
		{msg("bbb", "Verifying Checksum", 0, 0), true, PullProgress{Layers: 3, LayersDone: 1, Bytes: 1000, BytesTotal: 1500}},
		{msg("bbb", "Extracting", 300, 1000), true, PullProgress{Layers: 3, LayersDone: 1, Bytes: 1000, BytesTotal: 1500}},
		{msg("bbb", "Pull complete", 0, 0), true, PullProgress{Layers: 3, LayersDone: 2, Bytes: 1000, BytesTotal: 1500}},
		{msg("ccc", "Downloading", 900, 500), true, PullProgress{Layers: 3, LayersDone: 2, Bytes: 1500, BytesTotal: 1500}},
		{msg("ccc", "Pull complete", 0, 0), true, PullProgress{Layers: 3, LayersDone: 3, Bytes: 1500, BytesTotal: 1500}},
		{msg("", "Digest: sha256:0123", 0, 0), false, PullProgress{Layers: 3, LayersDone: 3, Bytes: 1500, BytesTotal: 1500}},
		{msg("", "Status: Downloaded newer image for pytorch/pytorch:2.7.0-cuda12.6-cudnn9-runtime", 0, 0), false, PullProgress{Layers: 3, LayersDone: 3, Bytes: 1500, BytesTotal: 1500}},
	}
	for i, st := range steps {
		if got := tr.update(st.m); got != st.changed {
			t.Errorf("step %d (%s %s): changed %v, want %v", i, st.m.ID, st.m.Status, got, st.changed)
		}
		if got := tr.progress(); got != st.want {
			t.Errorf("step %d (%s %s): progress %+v, want %+v", i, st.m.ID, st.m.Status, got, st.want)
		}
	}
}

// TestPullTrackerBounded: a stream announcing endless layers is not
// followed past maxPullLayers.
func TestPullTrackerBounded(t *testing.T) {
	tr := newPullTracker()
	for i := range maxPullLayers + 100 {
		tr.update(jsonstream.Message{ID: fmt.Sprintf("layer%d", i), Status: "Waiting"})
	}
	if n := tr.progress().Layers; n > maxPullLayers {
		t.Fatalf("%d layers tracked, want at most %d", n, maxPullLayers)
	}
}

// FuzzPullTracker feeds the tracker an engine's pull stream (JSON messages
// one after another, as the engine sends them): it never panics, never
// follows more than maxPullLayers layers and never reports more bytes or
// layers done than it knows of.
func FuzzPullTracker(f *testing.F) {
	f.Add([]byte(`{"status":"Pulling fs layer","id":"a"}{"status":"Downloading","progressDetail":{"current":5,"total":10},"id":"a"}{"status":"Pull complete","id":"a"}`))
	f.Add([]byte(`{"status":"Downloading","progressDetail":{"current":-5,"total":10},"id":"b"}{"status":"Retrying in 3 seconds","id":"b"}`))
	f.Add([]byte(`{"status":"Already exists","id":"c"}{"errorDetail":{"code":404,"message":"not found"}}`))
	f.Fuzz(func(t *testing.T, stream []byte) {
		tr := newPullTracker()
		dec := json.NewDecoder(bytes.NewReader(stream))
		for range 10000 {
			var m jsonstream.Message
			if dec.Decode(&m) != nil {
				break
			}
			tr.update(m)
			p := tr.progress()
			if p.Layers > maxPullLayers || p.LayersDone > p.Layers || p.Bytes > p.BytesTotal || p.Bytes < 0 {
				t.Fatalf("progress %+v after %+v", p, m)
			}
		}
	})
}
