//go:build linux

package sshd

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

func randomFile(tb testing.TB, path string, size int) []byte {
	tb.Helper()
	b := make([]byte, size)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestSFTPGoClient(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	c := ts.mustDial(t)
	client, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	wd, err := client.Getwd()
	if err != nil || wd != ts.home {
		t.Errorf("Getwd = %q, %v; want the home directory %s", wd, err, ts.home)
	}

	dir := t.TempDir()
	want := make([]byte, 1<<20)
	rand.Read(want)
	remote := filepath.Join(dir, "upload.bin")
	f, err := client.Create(remote)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFrom(bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(remote)
	if err != nil || !bytes.Equal(onDisk, want) {
		t.Fatalf("uploaded file differs (err %v, %d bytes)", err, len(onDisk))
	}

	r, err := client.Open(remote)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := r.WriteTo(&got); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("downloaded %d bytes that differ from the upload", got.Len())
	}

	if err := client.Chmod(remote, 0o755); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(remote); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("chmod over SFTP: %v %v", fi.Mode(), err)
	}
	if err := client.Rename(remote, remote+".2"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Stat(remote); err == nil {
		t.Error("renamed file still there")
	}
	if _, err := client.Stat(filepath.Join(dir, "missing")); err == nil {
		t.Error("stat of a missing file succeeded")
	}
}

func TestSFTPOpenSSH(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	bin := requireOpenSSH(t, "sftp")
	local := t.TempDir()
	remoteDir := t.TempDir()
	src := filepath.Join(local, "src.bin")
	want := randomFile(t, src, 1<<20)
	back := filepath.Join(local, "back.bin")
	remote := filepath.Join(remoteDir, "up.bin")
	batch := strings.Join([]string{
		"put " + src + " " + remote,
		"get " + remote + " " + back,
		"ls -l " + remoteDir,
	}, "\n") + "\n"

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append(ts.sshArgs(ts.keyFile, "-P"), "-b", "-", "root@127.0.0.1")
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(batch)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	for _, p := range []string{remote, back} {
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, err %v; want the 1 MiB source", p, len(got), err)
		}
	}
	if !strings.Contains(string(out), "up.bin") {
		t.Errorf("ls output %q", out)
	}
}

// TestSFTPThenExec uploads a program and runs it, the way the validator's
// Proof-of-GPU driver uses the container.
func TestSFTPThenExec(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	c := ts.mustDial(t)
	client, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	path := filepath.Join(t.TempDir(), "worker")
	f, err := client.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(f, "#!/bin/sh\necho worker \"$@\"\nexit 9\n")
	f.Close()
	if err := client.Chmod(path, 0o700); err != nil {
		t.Fatal(err)
	}
	r := run(t, c, path+" compute --n 4", nil)
	if r.stdout != "worker compute --n 4\n" || r.exit != 9 {
		t.Errorf("run uploaded worker: %+v", r)
	}
}
