package subtensortest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// RecordingsFile is the recorded finney traffic in the shared fixtures
// directory beside the module root. It is read in place, never copied into
// the repository.
const RecordingsFile = "bittensor-finney-rpc-recordings.json"

// Recordings is JSON-RPC traffic the Bittensor Python SDK had with finney:
// Sessions[name][method][params] is the recorded answer, params being the
// JSON array as Python's json.dumps writes it; an answer {"cycle": [...]}
// answers its items in turn. Metadata is state_getMetadata's answer (V14),
// MetadataAtVersion that of state_call Metadata_metadata_at_version (V15).
type Recordings struct {
	Metadata          string                                           `json:"metadata"`
	MetadataAtVersion string                                           `json:"metadata_at_version"`
	Sessions          map[string]map[string]map[string]json.RawMessage `json:"sessions"`
}

var loadOnce = sync.OnceValues(func() (*Recordings, error) {
	path, err := RecordingsPath()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Recordings
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
})

// RecordingsPath is ../shared/fixtures/RecordingsFile from the module root
// (the first directory above the working directory holding go.mod).
func RecordingsPath() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared", "fixtures", RecordingsFile), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// LoadRecordings returns the recordings, or skips the test when the file
// is absent.
func LoadRecordings(tb testing.TB) *Recordings {
	tb.Helper()
	r, err := loadOnce()
	if err != nil {
		tb.Skipf("recorded finney traffic not available (want ../shared/fixtures/%s beside the module root): %v", RecordingsFile, err)
	}
	return r
}

// normParams canonicalises a params array for matching: hex strings (with
// or without 0x, as the SDK sometimes omits it) become lower-case 0x hex,
// and a trailing block hash that is null or the session's head (both mean
// "the best block") is dropped.
func normParams(raw json.RawMessage, head string) string {
	var ps []any
	if err := json.Unmarshal(raw, &ps); err != nil {
		return "!" + string(raw)
	}
	for i := range ps {
		ps[i] = normValue(ps[i])
	}
	if n := len(ps); n > 0 && (ps[n-1] == nil || ps[n-1] == head) {
		ps = ps[:n-1]
	}
	b, _ := json.Marshal(ps)
	return string(b)
}

func normValue(v any) any {
	switch x := v.(type) {
	case string:
		s := strings.ToLower(strings.TrimPrefix(x, "0x"))
		if _, err := hex.DecodeString(s); err == nil && (s != "" || strings.HasPrefix(x, "0x")) {
			return "0x" + s
		}
		return x
	case []any:
		for i := range x {
			x[i] = normValue(x[i])
		}
	}
	return v
}

// Replay answers one recorded session. state_getMetadata answers the
// recorded V14 metadata and Metadata_metadata_at_version the V15 one. The
// SDK read the runtime version at the parent block; a request for it at
// the best block gets the session's recorded version. Any other call that
// was not recorded fails the test.
type Replay struct {
	tb    testing.TB
	rec   *Recordings
	head  string
	calls map[string]map[string]json.RawMessage // method → normalised params → answer
	rv    json.RawMessage

	mu     sync.Mutex // protects the following
	cycles map[string]int
	extra  func(method string, params []json.RawMessage) (Reply, bool)
}

// NewReplay prepares the replay of session.
func NewReplay(tb testing.TB, rec *Recordings, session string) *Replay {
	tb.Helper()
	s, ok := rec.Sessions[session]
	if !ok {
		tb.Fatalf("no recorded session %q", session)
	}
	r := &Replay{tb: tb, rec: rec, calls: map[string]map[string]json.RawMessage{}, cycles: map[string]int{}}
	if h, ok := s["chain_getHead"]["[]"]; ok {
		var a struct {
			Result string `json:"result"`
		}
		json.Unmarshal(h, &a)
		r.head = strings.ToLower(a.Result)
	}
	for method, byParams := range s {
		r.calls[method] = map[string]json.RawMessage{}
		for p, ans := range byParams {
			r.calls[method][normParams(json.RawMessage(p), r.head)] = ans
			if method == "state_getRuntimeVersion" && r.rv == nil {
				r.rv = ans
			}
		}
	}
	return r
}

// SetExtra installs answers for calls the session did not record: f
// answers first when it returns true.
func (r *Replay) SetExtra(f func(method string, params []json.RawMessage) (Reply, bool)) {
	r.mu.Lock()
	r.extra = f
	r.mu.Unlock()
}

// Handle is the replay's Handler.
func (r *Replay) Handle(method string, params []json.RawMessage) Reply {
	r.mu.Lock()
	extra := r.extra
	r.mu.Unlock()
	if extra != nil {
		if rep, ok := extra(method, params); ok {
			return rep
		}
	}
	raw, _ := json.Marshal(params)
	key := normParams(raw, r.head)
	switch {
	case method == "state_getMetadata":
		return Reply{Result: r.rec.Metadata}
	case method == "state_call" && len(params) > 0 && string(params[0]) == `"Metadata_metadata_at_version"`:
		return Reply{Result: r.rec.MetadataAtVersion}
	case method == "state_getRuntimeVersion" && key == "[]" && r.calls[method][key] == nil && r.rv != nil:
		return r.answer(method, key, r.rv)
	}
	ans, ok := r.calls[method][key]
	if !ok {
		r.tb.Errorf("replay: call not recorded: %s %s", method, key)
		return Reply{Err: &WireError{Code: -32601, Message: "not recorded"}}
	}
	return r.answer(method, key, ans)
}

// answer turns a recorded answer into a reply.
func (r *Replay) answer(method, key string, ans json.RawMessage) Reply {
	var a struct {
		Result json.RawMessage   `json:"result"`
		Error  *WireError        `json:"error"`
		Cycle  []json.RawMessage `json:"cycle"`
	}
	if err := json.Unmarshal(ans, &a); err != nil {
		r.tb.Fatalf("replay: bad recorded answer for %s: %v", method, err)
	}
	if a.Cycle != nil {
		r.mu.Lock()
		i := r.cycles[method+key]
		r.cycles[method+key]++
		r.mu.Unlock()
		return r.answer(method, key, a.Cycle[i%len(a.Cycle)])
	}
	if a.Error != nil {
		return Reply{Err: a.Error}
	}
	if bytes.Equal(a.Result, []byte("null")) {
		return Reply{Result: nil}
	}
	return Reply{Result: a.Result}
}

// Serve starts a node replaying session.
func Serve(tb testing.TB, session string) (*Node, *Replay) {
	tb.Helper()
	rp := NewReplay(tb, LoadRecordings(tb), session)
	return NewNode(tb, rp.Handle), rp
}
