package keys

import "testing"

func BenchmarkSign(b *testing.B) {
	kp, err := FromURI("//Alice")
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte("1700000000000000000.5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY.5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty.uuid.hash")
	for b.Loop() {
		if _, err := kp.Sign(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	kp, err := FromURI("//Alice")
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte("message")
	sig, err := kp.Sign(msg)
	if err != nil {
		b.Fatal(err)
	}
	addr := kp.SS58()
	for b.Loop() {
		if ok, err := Verify(addr, msg, sig); !ok || err != nil {
			b.Fatal("verify failed")
		}
	}
}

func BenchmarkFromMnemonic(b *testing.B) {
	for b.Loop() {
		if _, err := FromMnemonic(devPhrase, ""); err != nil {
			b.Fatal(err)
		}
	}
}
