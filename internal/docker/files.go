package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/sshd"
)

// File is one file to write into a lease container.
type File struct {
	// Path is absolute and clean, inside the container.
	Path string
	// Mode holds the permission bits (e.g. 0o600); the owner is root.
	Mode fs.FileMode
	Data []byte
}

// SetAuthorizedKeys replaces the lease's authorized_keys. The SSH server
// re-reads the file on every login, so the change applies to the next login
// without a restart; sessions already open stay open. Works on created,
// running and stopped containers. Errors: EINVALID (no key), ENOTFOUND,
// EUNAVAILABLE.
func (r *Runtime) SetAuthorizedKeys(ctx context.Context, lease string, keys []ssh.PublicKey) error {
	if len(keys) == 0 || len(keys) > MaxSSHKeys {
		return market.Errorf(market.EINVALID, "lease %s: 1 to %d ssh keys are required", lease, MaxSSHKeys)
	}
	c, err := r.lookup(ctx, lease)
	if err != nil {
		return err
	}
	if err := r.writeAuthorizedKeys(ctx, c.ID, MarshalAuthorizedKeys(keys)); err != nil {
		return fmt.Errorf("lease %s: %w", lease, err)
	}
	r.log.Info("lease authorized keys replaced", "lease", lease, "keys", len(keys))
	return nil
}

// CopyFiles writes files into the lease's container, creating missing
// parent directories (0755). Errors: EINVALID (bad path), ENOTFOUND,
// EUNAVAILABLE.
func (r *Runtime) CopyFiles(ctx context.Context, lease string, files []File) error {
	for _, f := range files {
		if !strings.HasPrefix(f.Path, "/") || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return market.Errorf(market.EINVALID, "file path %q must be absolute and clean", f.Path)
		}
		if f.Path == sshd.BinaryPath {
			return market.Errorf(market.EINVALID, "file path %s is the read-only nicompute binary", f.Path)
		}
	}
	c, err := r.lookup(ctx, lease)
	if err != nil {
		return err
	}
	tarball, err := buildTar(nil, files)
	if err != nil {
		return err
	}
	if err := r.copyTar(ctx, c.ID, tarball); err != nil {
		return fmt.Errorf("lease %s: %w", lease, err)
	}
	return nil
}

// leaseFiles is what Create writes into a new container.
type leaseFiles struct {
	authKeys []byte // authorized_keys content
	pwHash   []byte // password file content; nil: empty file (no password)
	hostKey  []byte // OpenSSH PEM private host key
	volume   string // volume path to create; empty: none
}

// newLeaseFiles prepares the files of spec s: its keys, its password hash
// and a fresh ed25519 host key.
func newLeaseFiles(s Spec) (leaseFiles, error) {
	f := leaseFiles{authKeys: MarshalAuthorizedKeys(s.AuthorizedKeys), volume: s.VolumePath}
	if s.Password != "" {
		h, err := hashPassword(s.Password)
		if err != nil {
			return f, err
		}
		f.pwHash = h
	}
	key, err := newHostKey()
	if err != nil {
		return f, err
	}
	f.hostKey = key
	return f, nil
}

// writeLeaseFiles writes sshd.Dir (0700) into container id with every file
// the SSH server reads, each 0600 and root's: authorized_keys, the password
// file (empty when the lease has none) and the host key. They replace what
// the image holds at those paths, so an image cannot pre-seed a password or
// a host key. The volume path, when set and not already a directory of the
// image, is created as a directory (0755, root).
func (r *Runtime) writeLeaseFiles(ctx context.Context, id string, lf leaseFiles) error {
	dirs := []File{{Path: sshd.Dir, Mode: 0o700}}
	if lf.volume != "" {
		isDir, err := r.isDir(ctx, id, lf.volume)
		if err != nil {
			return err
		}
		if !isDir {
			dirs = append(dirs, File{Path: lf.volume, Mode: 0o755})
		}
	}
	files := []File{
		{Path: path.Join(sshd.Dir, sshd.AuthorizedKeysFile), Mode: 0o600, Data: lf.authKeys},
		{Path: path.Join(sshd.Dir, sshd.PasswordFile), Mode: 0o600, Data: lf.pwHash},
		{Path: path.Join(sshd.Dir, sshd.HostKeyFile), Mode: 0o600, Data: lf.hostKey},
	}
	tarball, err := buildTar(dirs, files)
	if err != nil {
		return err
	}
	return r.copyTar(ctx, id, tarball)
}

// isDir reports whether p is a directory in container id; false when it
// does not exist. Errors: EINVALID when p exists but is not a directory
// (a file or a symbolic link), EUNAVAILABLE.
func (r *Runtime) isDir(ctx context.Context, id, p string) (bool, error) {
	ctx, cancel := r.call(ctx)
	defer cancel()
	res, err := r.cli.ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: p})
	switch {
	case cerrdefs.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, wrap(ctx, "stat "+p+" in container", "container "+shortID(id), err)
	case res.Stat.Mode.IsDir():
		return true, nil
	}
	return false, market.Errorf(market.EINVALID, "volume path %s exists in the image and is not a directory", p)
}

// writeAuthorizedKeys replaces authorized_keys (0600) in container id.
func (r *Runtime) writeAuthorizedKeys(ctx context.Context, id string, authKeys []byte) error {
	tarball, err := buildTar([]File{{Path: sshd.Dir, Mode: 0o700}},
		[]File{{Path: path.Join(sshd.Dir, sshd.AuthorizedKeysFile), Mode: 0o600, Data: authKeys}})
	if err != nil {
		return err
	}
	return r.copyTar(ctx, id, tarball)
}

func (r *Runtime) copyTar(ctx context.Context, id string, tarball []byte) error {
	ctx, cancel := r.call(ctx)
	defer cancel()
	_, err := r.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{
		DestinationPath: "/",
		Content:         bytes.NewReader(tarball),
	})
	return wrap(ctx, "copy files into container", "container "+shortID(id), err)
}

// buildTar returns a tar archive, relative to "/", holding dirs (root, the
// mode of each; their Data is ignored) and files (root, their mode).
// Missing parent directories are created by the engine with mode 0755;
// listed directories already present keep their contents but get the
// listed mode and root ownership. A file replaces whatever non-directory
// the container has at its path; the engine refuses to replace a directory
// with a file or a file (or link) with a directory.
func buildTar(dirs, files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Now()
	for _, d := range dirs {
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d.Path, "/") + "/", Mode: int64(d.Mode.Perm()), ModTime: mtime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar %s: %w", d.Path, err)
		}
	}
	for _, f := range files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Path, "/"), Mode: int64(f.Mode.Perm()), Size: int64(len(f.Data)), ModTime: mtime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar %s: %w", f.Path, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("tar %s: %w", f.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar: %w", err)
	}
	return buf.Bytes(), nil
}

// hashPassword returns the password file's content.
func hashPassword(pw string) ([]byte, error) {
	h, err := sshd.HashPassword(pw)
	if err != nil {
		return nil, fmt.Errorf("hash lease password: %w", err)
	}
	return []byte(h + "\n"), nil
}

// newHostKey returns a fresh ed25519 SSH host key in OpenSSH PEM form.
func newHostKey() ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate lease host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, fmt.Errorf("encode lease host key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}
