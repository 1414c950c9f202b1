package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/docker"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/protocol"
	"github.com/nicompute/nicompute/internal/sshd"
)

// BenchmarkAllocateToSSH measures the time from an Allocate request to a
// successful SSH login, side by side with the original's method on the same
// base image and SSH server: a per-allocation `docker build` of a layer that
// writes the key and the password hash (RUN steps with busybox sh, Docker
// API with a tar context), then `docker run`, then waiting for the server.
// Each reports p50 and p95 in ms; run 20 allocations each:
//
//	go test ./cmd/nicompute -run '^$' -bench AllocateToSSH -benchtime 20x
func BenchmarkAllocateToSSH(b *testing.B) {
	w := newMinerWorld(b)
	key := newSSHKeyPair(b)

	b.Run("nicompute", func(b *testing.B) {
		e := newLeaseEnv(b, "b"+randHex(b, 6))
		o := minerOpts(b, w, e)
		o.Log = nil
		m := startTestMinerProc(b, o)
		lc := newLeaseClient(b, w.validator, m.AxonAddr(), m.Hotkey())
		ctx := context.Background()
		var lat []time.Duration
		for b.Loop() {
			b.StopTimer()
			r := newLeaseRenter(b) // RSA key generation is the renter's, not the miner's
			b.StartTimer()
			t0 := time.Now()
			out, st, err := lc.call(ctx, r.allocate(key.line, 1), time.Minute)
			if st != 200 {
				b.Fatalf("allocate: %d %v", st, err)
			}
			creds, err := protocol.DecryptCredentials(r.priv, out.Info)
			if err != nil {
				b.Fatal(err)
			}
			c, err := sshLogin(creds.Port, ssh.PublicKeys(key.signer), 30*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
			b.StopTimer()
			c.Close()
			if _, st, err := lc.call(ctx, r.deallocate(), time.Minute); st != 200 {
				b.Fatalf("deallocate: %d %v", st, err)
			}
			b.StartTimer()
		}
		reportPercentiles(b, lat)
	})

	b.Run("original", func(b *testing.B) {
		inst := "b" + randHex(b, 6)
		e := newLeaseEnv(b, inst)
		ctx := context.Background()
		var lat []time.Duration
		for i := 0; b.Loop(); i++ {
			port := nictest.FreePort(b)
			tag := fmt.Sprintf("nicompute-bench-original:%s-%d", inst, i)
			t0 := time.Now()
			id, err := originalAllocate(ctx, e, inst, tag, key.line, port)
			if err != nil {
				b.Fatal(err)
			}
			c, err := sshLogin(port, ssh.PublicKeys(key.signer), 30*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
			b.StopTimer()
			c.Close()
			if _, err := e.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
				b.Fatal(err)
			}
			if _, err := e.cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		reportPercentiles(b, lat)
	})
}

// originalAllocate is the original miner's allocation, transposed to the
// test image and nicompute sshd: build an image whose layers write the
// renter key and a password hash, then create and start a container from
// it with the SSH port published.
func originalAllocate(ctx context.Context, e *leaseEnv, inst, tag, keyLine string, port int) (string, error) {
	pw := rand.Text()
	hash, err := sshd.HashPassword(pw)
	if err != nil {
		return "", err
	}
	dockerfile := fmt.Sprintf("FROM %s\n"+
		"RUN [\"/bin/sh\", \"-c\", \"mkdir -p %s && echo '%s' > %s/%s && chmod 600 %s/%s\"]\n"+
		"RUN [\"/bin/sh\", \"-c\", \"echo '%s' > %s/%s && chmod 600 %s/%s\"]\n",
		e.image, sshd.Dir, keyLine, sshd.Dir, sshd.AuthorizedKeysFile, sshd.Dir, sshd.AuthorizedKeysFile,
		hash, sshd.Dir, sshd.PasswordFile, sshd.Dir, sshd.PasswordFile)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile))}); err != nil {
		return "", err
	}
	tw.Write([]byte(dockerfile))
	tw.Close()
	res, err := e.cli.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags: []string{tag}, Remove: true, ForceRemove: true, Version: build.BuilderV1,
		Labels: map[string]string{"nicompute.test": "true"},
	})
	if err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	dec := json.NewDecoder(res.Body)
	for {
		var m jsonstream.Message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			res.Body.Close()
			return "", err
		}
		if m.Error != nil {
			res.Body.Close()
			return "", fmt.Errorf("build: %s", m.Error.Message)
		}
	}
	res.Body.Close()
	p22 := network.MustParsePort("22/tcp")
	init := true
	cr, err := e.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image: tag, User: "0:0", Entrypoint: sshd.Entrypoint(true), ExposedPorts: network.PortSet{p22: {}},
			Labels: map[string]string{docker.LabelManaged: "true", docker.LabelMiner: inst},
		},
		HostConfig: &container.HostConfig{
			PortBindings: network.PortMap{p22: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(port)}}},
			Mounts:       []mount.Mount{{Type: mount.TypeBind, Source: e.bin, Target: sshd.BinaryPath, ReadOnly: true}},
			Init:         &init,
		},
	})
	if err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	if _, err := e.cli.ContainerStart(ctx, cr.ID, client.ContainerStartOptions{}); err != nil {
		return cr.ID, fmt.Errorf("start: %w", err)
	}
	return cr.ID, nil
}

// reportPercentiles reports p50 and p95 of lat in milliseconds.
func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q*float64(len(s))+0.5) - 1
		return float64(s[max(0, min(i, len(s)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.95), "p95-ms")
	b.ReportMetric(0, "ns/op")
}
