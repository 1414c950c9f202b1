package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nicompute/nicompute/internal/chain/local"
	"github.com/nicompute/nicompute/internal/chain/subtensor"
	"github.com/nicompute/nicompute/internal/docker"
	"github.com/nicompute/nicompute/internal/doctor"
	"github.com/nicompute/nicompute/internal/hostinfo"
	"github.com/nicompute/nicompute/internal/subnet"
)

// doctorProbes are doctor's view of this machine: the Docker engine,
// nvidia-smi, iptables or nft, ufw and the chain, each read once.
type doctorProbes struct {
	a          *app
	sf         subtensorFlags
	netuid     subnet.NetUID
	dockerHost string
	api        apiDoctorFiles

	dockerOnce sync.Once
	docker     doctor.Docker
	dockerErr  error

	chainOnce sync.Once
	chainC    subnet.Chain
	chain     doctor.Chain
	chainErr  error
}

var _ doctor.Probes = (*doctorProbes)(nil)

func (p *doctorProbes) close() {
	if p.chainC != nil {
		p.chainC.Close()
	}
}

func (p *doctorProbes) Docker(ctx context.Context) (doctor.Docker, error) {
	p.dockerOnce.Do(func() {
		exe, err := os.Executable()
		if err != nil {
			p.dockerErr = err
			return
		}
		rt, err := docker.New(docker.Config{Instance: "doctor", BinaryPath: exe, Host: p.dockerHost})
		if err != nil {
			p.dockerErr = err
			return
		}
		defer rt.Close()
		ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
		defer cancel()
		info, err := rt.Info(ctx)
		if err != nil {
			p.dockerErr = err
			return
		}
		p.docker = doctor.Docker{ServerVersion: info.ServerVersion, APIVersion: info.APIVersion, StorageDriver: info.StorageDriver,
			BackingFS: info.BackingFilesystem, DiskQuota: info.DiskQuota, NvidiaRuntime: info.NvidiaRuntime, CDI: info.CDI, Warnings: info.Warnings}
	})
	return p.docker, p.dockerErr
}

func (p *doctorProbes) GPUs(ctx context.Context) ([]string, error) {
	gpus, _, err := hostinfo.NVML{Timeout: doctorTimeout}.GPUs(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(gpus))
	for i, g := range gpus {
		names[i] = g.Name
	}
	return names, nil
}

// run runs a tool with an argument vector (never a shell) and returns its
// standard output.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errOut.String())
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return nil, fmt.Errorf("%s: %v: %s", name, err, msg)
	}
	return out.Bytes(), nil
}

// PacketFilter looks for Docker's chains with iptables (either backend),
// or in the nft ruleset when there is no iptables.
func (p *doctorProbes) PacketFilter(ctx context.Context) (doctor.PacketFilter, error) {
	if _, err := exec.LookPath("iptables"); err == nil {
		var pf doctor.PacketFilter
		if v, err := run(ctx, "iptables", "--version"); err == nil {
			pf.Backend = "iptables-legacy"
			if bytes.Contains(v, []byte("nf_tables")) {
				pf.Backend = "iptables-nft"
			}
		}
		out, err := run(ctx, "iptables", "-w", "5", "-S")
		if err != nil {
			return pf, err
		}
		pf.DockerChains = bytes.Contains(out, []byte("-N DOCKER\n")) &&
			(bytes.Contains(out, []byte("-N DOCKER-ISOLATION-STAGE-1")) || bytes.Contains(out, []byte("-N DOCKER-FORWARD")))
		_, err = run(ctx, "iptables", "-w", "5", "-t", "security", "-S", "FORWARD")
		pf.SecurityTable = err == nil
		_, err = run(ctx, "iptables", "-w", "5", "-t", "raw", "-S", "PREROUTING")
		pf.RawTable = err == nil
		return pf, nil
	}
	if _, err := exec.LookPath("nft"); err != nil {
		return doctor.PacketFilter{}, errors.New("neither iptables nor nft is installed")
	}
	out, err := run(ctx, "nft", "list", "ruleset")
	if err != nil {
		return doctor.PacketFilter{Backend: "nft"}, err
	}
	return doctor.PacketFilter{Backend: "nft", DockerChains: bytes.Contains(out, []byte("chain DOCKER"))}, nil
}

// Listening dials the port on loopback and on the default route's address.
func (p *doctorProbes) Listening(ctx context.Context, port int) bool {
	hosts := []string{"127.0.0.1"}
	if ip, err := outboundIP(); err == nil {
		hosts = append(hosts, ip)
	}
	for _, h := range hosts {
		d := net.Dialer{Timeout: time.Second}
		if c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(h, strconv.Itoa(port))); err == nil {
			c.Close()
			return true
		}
	}
	return false
}

// UFW reads `ufw status` (root only).
func (p *doctorProbes) UFW(ctx context.Context) (doctor.UFW, error) {
	if _, err := exec.LookPath("ufw"); err != nil {
		return doctor.UFW{}, nil
	}
	out, err := run(ctx, "ufw", "status")
	if err != nil {
		return doctor.UFW{Installed: true}, err
	}
	return parseUFW(out), nil
}

// parseUFW reads `ufw status`: "Status: active" and the rules whose
// action is ALLOW or LIMIT (inbound), such as "8091/tcp ALLOW Anywhere" or
// "22/tcp (v6) LIMIT Anywhere (v6)".
func parseUFW(out []byte) doctor.UFW {
	u := doctor.UFW{Installed: true}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "Status:" {
			u.Active = f[1] == "active"
			continue
		}
		for i, w := range f {
			if w == "ALLOW" || w == "LIMIT" || w == "DENY" || w == "REJECT" {
				if i > 0 && w != "DENY" && w != "REJECT" && (i+1 >= len(f) || f[i+1] != "OUT") {
					u.Allowed = append(u.Allowed, f[0])
				}
				break
			}
		}
	}
	return u
}

func (p *doctorProbes) OutboundIP() (string, error) { return outboundIP() }

// Chain reads the metagraph, the hyperparameters and the chain's clock.
func (p *doctorProbes) Chain(ctx context.Context) (doctor.Chain, error) {
	p.chainOnce.Do(func() {
		ctx, cancel := context.WithTimeout(ctx, 2*doctorTimeout)
		defer cancel()
		p.chainC, p.chainErr = p.a.dialChain(ctx, p.sf)
		if p.chainErr != nil {
			return
		}
		var c doctor.Chain
		if c.Metagraph, p.chainErr = p.chainC.Metagraph(ctx, p.netuid); p.chainErr != nil {
			return
		}
		if c.Hyper, p.chainErr = p.chainC.Hyperparameters(ctx, p.netuid); p.chainErr != nil {
			return
		}
		start := time.Now()
		switch ch := p.chainC.(type) {
		case *local.Client:
			if t, err := ch.Time(ctx); err == nil {
				c.Time, c.Uncertainty = t, time.Second+time.Since(start)
			}
		case *subtensor.Client:
			// A block's timestamp is set when it is authored: up to a
			// block (12 s) behind, and finalisation adds no more here
			// since the best block is read.
			if t, err := ch.BlockTime(ctx); err == nil {
				c.Time, c.Uncertainty = t.Add(6*time.Second), 6*time.Second+time.Since(start)
			}
		}
		p.chain = c
	})
	return p.chain, p.chainErr
}

// DiskFree reads the filesystem of path, or of its nearest existing
// parent (a data directory not created yet).
func (p *doctorProbes) DiskFree(path string) (uint64, uint64, error) {
	var st unix.Statfs_t
	for {
		err := unix.Statfs(path, &st)
		if err == nil {
			break
		}
		parent := filepath.Dir(path)
		if !errors.Is(err, unix.ENOENT) || parent == path {
			return 0, 0, err
		}
		path = parent
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

func (p *doctorProbes) Now() time.Time { return time.Now() }
