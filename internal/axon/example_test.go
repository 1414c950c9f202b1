package axon_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/keys"
)

// A miner serves a synapse; a validator calls it.
func Example() {
	minerKey, _ := keys.FromURI("//Bob")
	validatorKey, _ := keys.FromURI("//Alice")

	srv, err := axon.NewServer(axon.Config{Hotkey: minerKey}, slog.New(slog.DiscardHandler))
	if err != nil {
		panic(err)
	}
	srv.Attach("Specs", func(ctx context.Context, call *axon.Call) (any, error) {
		return map[string]string{"specs_output": "{}"}, nil
	}, axon.Hooks{
		Blacklist: func(_ context.Context, c axon.Caller, _ string) (string, bool) {
			return "not a validator", c.Hotkey != validatorKey.SS58()
		},
	})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Serve(ctx, ln) }()

	d := axon.NewDendrite(validatorKey)
	defer d.Close()
	var resp struct {
		SpecsOutput string `json:"specs_output"`
	}
	res, err := d.Call(context.Background(), axon.Target{Addr: ln.Addr().String(), Hotkey: minerKey.SS58()},
		"Specs", map[string]string{"specs_input": ""}, &resp, 5*time.Second)
	if err != nil {
		fmt.Println("error:", axon.StatusCode(err), err)
	} else {
		fmt.Println(res.StatusCode, res.StatusMessage, resp.SpecsOutput)
	}
	d.Close()
	cancel()
	<-done
	// Output: 200 Success {}
}
