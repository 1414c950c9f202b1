package subtensor

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	st "github.com/nicompute/nicompute/internal/chain/subtensor/subtensortest"
)

func mustJSON(tb testing.TB, s string, v any) {
	tb.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		tb.Fatalf("json %.40q: %v", s, err)
	}
}

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if err != nil {
		tb.Fatalf("hex %.20q: %v", s, err)
	}
	return b
}

// loadRecordings returns the recorded finney traffic or skips the test.
func loadRecordings(tb testing.TB) *st.Recordings {
	tb.Helper()
	return st.LoadRecordings(tb)
}

// metadataV15 decodes the recorded Metadata_metadata_at_version(15)
// answer: Option<Vec<u8>>.
func metadataV15(tb testing.TB, rec *st.Recordings) *Metadata {
	tb.Helper()
	rd := newReader(mustHex(tb, rec.MetadataAtVersion))
	if !rd.option() {
		tb.Fatal("metadata_at_version: not Some")
	}
	blob := rd.bytes()
	if err := rd.done(); err != nil {
		tb.Fatal(err)
	}
	m, err := decodeMetadata(blob)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// startReplay serves a recorded session and dials it.
func startReplay(tb testing.TB, session string) (*Client, *st.Node, *st.Replay) {
	tb.Helper()
	node, rp := st.Serve(tb, session)
	c, err := Dial(tb.Context(), node.URL(), testConfig(tb))
	if err != nil {
		tb.Fatalf("dial replay of %s: %v", session, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c, node, rp
}
