// Command nicompute-pog is the Proof-of-GPU worker a validator uploads into
// a rented GPU container: `nicompute pog` plus the CUDA backend (the
// default). The CUDA backend loads libcuda and cuBLAS at run time with
// purego, which makes this binary dynamically linked: it needs the C library
// that every CUDA image has. nicompute itself stays static.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nicompute/nicompute/internal/pog"
	"github.com/nicompute/nicompute/internal/pog/cuda"
	"github.com/nicompute/nicompute/internal/pog/pogcmd"
	"github.com/nicompute/nicompute/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line and returns the exit code.
func run(ctx context.Context, args []string, in io.Reader, out, errw io.Writer) int {
	var (
		libCUDA, libCUBLAS string
		devices            []int
		debug              bool
	)
	cudaBackend := pogcmd.Backend{
		Name:  "cuda",
		Short: "NVIDIA GPUs through the CUDA driver and cuBLAS (loaded at run time)",
		AddFlags: func(fs *pflag.FlagSet) {
			fs.StringVar(&libCUDA, "libcuda", "", "cuda backend: path of libcuda (default: libcuda.so.1 on the loader path)")
			fs.StringVar(&libCUBLAS, "libcublas", "", "cuda backend: path of libcublas (default: searched on the loader path, in /usr/local/cuda and in Python wheels)")
			fs.IntSliceVar(&devices, "devices", nil, "cuda backend: device ordinals to use (default all)")
		},
		New: func(*pogcmd.Flags) (pog.Backend, error) {
			return cuda.Backend{LibCUDA: libCUDA, LibCUBLAS: libCUBLAS, Devices: devices}, nil
		},
	}
	logger := func() *slog.Logger {
		lvl := slog.LevelInfo
		if debug {
			lvl = slog.LevelDebug
		}
		return slog.New(slog.NewTextHandler(errw, &slog.HandlerOptions{Level: lvl}))
	}
	root := pogcmd.New("nicompute-pog", pogcmd.Options{In: in, Out: out, Err: errw, Backends: []pogcmd.Backend{cudaBackend}, Log: logger})
	root.SilenceUsage, root.SilenceErrors = true, true
	root.PersistentFlags().BoolVar(&debug, "logging.debug", false, "log at debug level")
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(out, version.Get().String())
			return err
		},
	})
	root.SetArgs(args)
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errw)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(errw, "error: %v\n", err)
		return 1
	}
	return 0
}
