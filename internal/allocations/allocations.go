// Package allocations keeps a validator operator's records of the leases it
// allocated directly on miners (nicompute allocate): for each (netuid, miner
// hotkey) one JSON record and the RSA private key whose public half owns the
// lease on the miner. Files are 0600 in a 0700 directory under the wallet;
// no password is ever stored. The validator reads the same records (List)
// to know which miners it has rented out.
package allocations

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Record is one allocation.
type Record struct {
	NetUID uint16 `json:"netuid"`
	// UID and Hotkey identify the miner (a uid can change hands; the
	// hotkey is the key of the record).
	UID    uint16 `json:"uid"`
	Hotkey string `json:"hotkey"`
	// Validator is the hotkey that allocated and owns the lease.
	Validator string `json:"validator"`
	// Host, Port and Username are where to log in.
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Username string `json:"username"`
	// Password reports that password login was enabled; the password is
	// shown once and never stored.
	Password  bool      `json:"password,omitempty"`
	LeaseID   string    `json:"lease_id,omitempty"`
	Image     string    `json:"image,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Pending marks a record written before the miner answered; a
	// pending record whose allocation failed is removed.
	Pending bool `json:"pending,omitempty"`
}

// ErrNotFound is returned (wrapped) for a missing record or key.
var ErrNotFound = errors.New("no allocation record")

// ErrExists is returned (wrapped) by Create when the record exists.
var ErrExists = errors.New("allocation record exists")

// Dir is the record directory of a wallet's hotkey:
// <wallets>/<wallet>/allocations/<hotkey>.
func Dir(walletsDir, wallet, hotkey string) string {
	return filepath.Join(walletsDir, wallet, "allocations", hotkey)
}

// base is the file name stem of a record: <netuid>-<hotkey>.
func base(netuid uint16, hotkey string) (string, error) {
	if !validSS58(hotkey) {
		return "", fmt.Errorf("invalid miner hotkey %q", hotkey)
	}
	return strconv.Itoa(int(netuid)) + "-" + hotkey, nil
}

// validSS58 keeps record names to the base58 alphabet, so a hotkey can
// never name a path outside the directory.
func validSS58(s string) bool {
	if len(s) < 40 || len(s) > 60 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz", c) {
			return false
		}
	}
	return true
}

// Save writes r, replacing the record of the same (netuid, hotkey).
func Save(dir string, r Record) error {
	name, err := base(r.NetUID, r.Hotkey)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(dir, name+".json", append(b, '\n'), false)
}

// Create writes r like Save, but only when no record of the same (netuid,
// hotkey) exists; checking and writing are one atomic step, so of two
// allocations of one miner started at once only one gets the record.
// Errors wrap ErrExists when the record exists.
func Create(dir string, r Record) error {
	name, err := base(r.NetUID, r.Hotkey)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(dir, name+".json", append(b, '\n'), true)
}

// SaveKey writes the lease's RSA private key (PKCS#8 PEM).
func SaveKey(dir string, netuid uint16, hotkey string, key *rsa.PrivateKey) error {
	name, err := base(netuid, hotkey)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writeFile(dir, name+".key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), false)
}

// writeFile writes data atomically with mode 0600 in dir (made 0700). When
// exclusive, an existing file is left alone and the error wraps ErrExists.
func writeFile(dir, name string, data []byte, exclusive bool) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if !exclusive {
		return os.Rename(tmp.Name(), filepath.Join(dir, name))
	}
	// A hard link never replaces its target: the record appears whole, or
	// the one already there stays.
	if err := os.Link(tmp.Name(), filepath.Join(dir, name)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrExists, name)
		}
		return err
	}
	return nil
}

// Load reads the record of (netuid, hotkey). Errors wrap ErrNotFound.
func Load(dir string, netuid uint16, hotkey string) (Record, error) {
	name, err := base(netuid, hotkey)
	if err != nil {
		return Record{}, err
	}
	return readRecord(filepath.Join(dir, name+".json"))
}

func readRecord(path string) (Record, error) {
	var r Record
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, fmt.Errorf("%w: %s", ErrNotFound, filepath.Base(path))
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("allocation record %s: %w", path, err)
	}
	return r, nil
}

// Key reads the lease key of (netuid, hotkey). Errors wrap ErrNotFound.
func Key(dir string, netuid uint16, hotkey string) (*rsa.PrivateKey, error) {
	name, err := base(netuid, hotkey)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, name+".key"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: key %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("lease key %s is not a PKCS#8 PEM key", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("lease key %s: %w", name, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("lease key %s is not an RSA key", name)
	}
	return rk, nil
}

// Remove deletes the record and key of (netuid, hotkey); missing files are
// not an error.
func Remove(dir string, netuid uint16, hotkey string) error {
	name, err := base(netuid, hotkey)
	if err != nil {
		return err
	}
	var errs []error
	for _, ext := range []string{".json", ".key"} {
		if err := os.Remove(filepath.Join(dir, name+ext)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// List returns every record in dir, by netuid then uid; a missing
// directory holds none.
func List(dir string) ([]Record, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		r, err := readRecord(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].NetUID != out[j].NetUID {
			return out[i].NetUID < out[j].NetUID
		}
		if out[i].UID != out[j].UID {
			return out[i].UID < out[j].UID
		}
		return out[i].Hotkey < out[j].Hotkey
	})
	return out, nil
}
