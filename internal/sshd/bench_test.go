//go:build linux

package sshd

import (
	"bytes"
	"crypto/rand"
	"io"
	"path/filepath"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// BenchmarkLoginExec measures a full connection: handshake, key login,
// one `true` command, close.
func BenchmarkLoginExec(b *testing.B) {
	ts := startServer(b, nil)
	for b.Loop() {
		c, err := ts.dial("root", ssh.PublicKeys(ts.signer))
		if err != nil {
			b.Fatal(err)
		}
		s, err := c.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Run("true"); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkExec measures one command on an open connection.
func BenchmarkExec(b *testing.B) {
	ts := startServer(b, nil)
	c := ts.mustDial(b)
	for b.Loop() {
		s, err := c.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Run("true"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSFTPUpload measures SFTP upload throughput of 16 MiB files.
func BenchmarkSFTPUpload(b *testing.B) {
	ts := startServer(b, nil)
	c := ts.mustDial(b)
	client, err := sftp.NewClient(c, sftp.UseConcurrentWrites(true))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	data := make([]byte, 16<<20)
	rand.Read(data)
	path := filepath.Join(b.TempDir(), "up")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		f, err := client.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// BenchmarkExecOutput measures stdout throughput of a command.
func BenchmarkExecOutput(b *testing.B) {
	ts := startServer(b, nil)
	c := ts.mustDial(b)
	b.SetBytes(64 << 20)
	for b.Loop() {
		s, err := c.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		s.Stdout = io.Discard
		if err := s.Run("/bin/busybox head -c 67108864 /dev/zero"); err != nil {
			b.Fatal(err)
		}
	}
}
