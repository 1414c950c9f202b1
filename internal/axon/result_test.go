package axon

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
)

// TestErrorWithResult checks that a handler's *Error with a Result answers
// with the error's status and the synapse carrying the result, that the
// dendrite decodes it into the response and returns the *Error, and that
// the answer is signed like a successful one.
func TestErrorWithResult(t *testing.T) {
	srv, err := NewServer(Config{Hotkey: mustKey(t, "//Bob")}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv.Attach("Echo", func(ctx context.Context, call *Call) (any, error) {
		return nil, &Error{Status: http.StatusConflict, Message: "busy",
			Result: map[string]any{"output": map[string]any{"status": false, "error": "busy"}}}
	}, Hooks{})
	srv.Attach("Plain", func(ctx context.Context, call *Call) (any, error) {
		return nil, &Error{Status: http.StatusForbidden, Message: "no"}
	}, Hooks{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	d := NewDendrite(mustKey(t, "//Alice"), WithRequireSignedResponse())
	t.Cleanup(func() {
		d.Close()
		cancel()
		<-done
		srv.Close()
	})
	target := Target{Addr: ln.Addr().String(), Hotkey: srv.Hotkey()}

	var resp echoResponse
	res, err := d.Call(ctx, target, "Echo", echoRequest{Timeline: 3}, &resp, 0)
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Message != "busy" {
		t.Fatalf("Call error = %v, want *Error 409 busy", err)
	}
	if res == nil || !res.Signed {
		t.Errorf("result %+v: want a signed answer", res)
	}
	if resp.Output["error"] != "busy" || resp.Output["status"] != false || resp.Timeline != 3 || resp.Name != "Echo" {
		t.Errorf("response synapse = %+v, want the handler's output over the request", resp)
	}
	if resp.Axon.StatusCode != http.StatusConflict {
		t.Errorf("axon status in body = %d, want 409", resp.Axon.StatusCode)
	}

	var plain echoResponse
	_, err = d.Call(ctx, target, "Plain", echoRequest{Timeline: 3}, &plain, 0)
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Fatalf("Plain error = %v, want *Error 403", err)
	}
	if plain.Timeline != 0 || plain.Output != nil {
		t.Errorf("a bare error answer decoded into the response: %+v", plain)
	}
}
