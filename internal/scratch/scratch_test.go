package scratch

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

func TestDeterministicTar(t *testing.T) {
	entries := map[string]tarEntry{
		"b":     {mode: 0o644, data: []byte("b")},
		"a/":    {mode: 0o755, dir: true},
		"a/lnk": {link: "../b"},
	}
	x, err := deterministicTar(entries)
	if err != nil {
		t.Fatal(err)
	}
	y, err := deterministicTar(entries)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatal("same entries gave different archives")
	}
}

// TestBuildWithFiles builds an image with an extra file and checks that the
// tag follows the content: the same content reuses the image, other
// content gets another tag. The image's shell is exercised by the test
// helpers' own tests.
func TestBuildWithFiles(t *testing.T) {
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skipf("needs busybox-static at %s", BusyboxPath)
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Skipf("docker engine: %v", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		t.Skipf("docker engine not available: %v", err)
	}
	img := Image{Repo: "nicompute-test-scratch", Labels: map[string]string{"nicompute.test": "true"},
		Files: map[string][]byte{"/opt/x/hello": []byte("#!/bin/sh\necho hi\n")}}
	a, err := Build(ctx, cli, img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.ImageRemove(context.Background(), a, client.ImageRemoveOptions{Force: true}) })
	b, err := Build(ctx, cli, img)
	if err != nil || b != a {
		t.Fatalf("rebuild of the same content: %s, %v; want %s", b, err, a)
	}
	img.Files = map[string][]byte{"/opt/x/hello": []byte("#!/bin/sh\necho bye\n")}
	c, err := Build(ctx, cli, img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.ImageRemove(context.Background(), c, client.ImageRemoveOptions{Force: true}) })
	if c == a {
		t.Fatal("different content got the same tag")
	}
	if _, err := Build(ctx, cli, Image{Repo: "x", Files: map[string][]byte{"relative": nil}}); err == nil {
		t.Fatal("relative file path accepted")
	}
}
