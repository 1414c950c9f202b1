package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

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
	if err := r.writeSSHFiles(ctx, c.ID, MarshalAuthorizedKeys(keys), nil); err != nil {
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

// writeSSHFiles writes sshd.Dir (0700) with authorized_keys (0600) and,
// when pwHash is not nil, the password hash (0600) into container id.
func (r *Runtime) writeSSHFiles(ctx context.Context, id string, authKeys, pwHash []byte) error {
	files := []File{{Path: path.Join(sshd.Dir, sshd.AuthorizedKeysFile), Mode: 0o600, Data: authKeys}}
	if pwHash != nil {
		files = append(files, File{Path: path.Join(sshd.Dir, sshd.PasswordFile), Mode: 0o600, Data: pwHash})
	}
	tarball, err := buildTar([]string{sshd.Dir}, files)
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

// buildTar returns a tar archive, relative to "/", holding dirs (0700,
// root) and files (root, their mode). Directories not listed are created
// by the engine with mode 0755; listed ones already present keep their
// contents but get mode 0700 and root ownership.
func buildTar(dirs []string, files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Now()
	for _, d := range dirs {
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o700, ModTime: mtime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar %s: %w", d, err)
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
