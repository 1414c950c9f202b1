package axon

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/keys"
)

// BenchmarkVerify measures raw sr25519 verifications of a request
// signature message.
func BenchmarkVerify(b *testing.B) {
	alice := mustKey(b, "//Alice")
	msg := []byte(SignatureMessage(time.Now().UnixNano(), aliceSS58, bobSS58, testUUID, EmptyBodyHash))
	sig, err := alice.Sign(msg)
	if err != nil {
		b.Fatal(err)
	}
	pub := alice.PublicKey()
	for b.Loop() {
		if ok, err := keys.VerifyPublic(pub, msg, sig); !ok || err != nil {
			b.Fatal("signature does not verify")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
}

// BenchmarkAxonSignedRoundTrip measures signed requests per second through
// a loopback axon and dendrites, the handler returning a small status
// object: sequential calls from one dendrite, and concurrent calls.
func BenchmarkAxonSignedRoundTrip(b *testing.B) {
	ta := startAxon(b, Config{}, Hooks{})
	req := echoRequest{Timeline: 1, Checking: true}
	b.Run("sequential", func(b *testing.B) {
		d := NewDendrite(mustKey(b, "//Alice"))
		defer d.Close()
		for b.Loop() {
			if _, err := d.Call(context.Background(), ta.target, "Echo", req, nil, 10*time.Second); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	})
	b.Run("parallel", func(b *testing.B) {
		d := NewDendrite(mustKey(b, "//Alice"))
		defer d.Close()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := d.Call(context.Background(), ta.target, "Echo", req, nil, 10*time.Second); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	})
}

// BenchmarkNonceStoreFlood measures nonce commits while admitted hotkeys
// flood a full store with fresh uuids, so that it keeps trimming.
func BenchmarkNonceStoreFlood(b *testing.B) {
	s := newNonceStore(DefaultMaxNonceAge+time.Second, DefaultNonceCapacity, DefaultNoncesPerHotkey)
	now := time.Now()
	hotkeys := make([]string, 1024)
	for i := range hotkeys {
		hotkeys[i] = fmt.Sprintf("hotkey%d", i)
	}
	base := now.UnixNano()
	i := 0
	for b.Loop() {
		if err := s.commit(hotkeys[i%len(hotkeys)], strconv.Itoa(i), base+int64(i), now); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}
