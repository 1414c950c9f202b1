package wallet

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/nacl/secretbox"
)

// Encryption methods as EncryptionMethod names them.
const (
	MethodNaCl    = "NaCl"
	MethodAnsible = "Ansible Vault"
	MethodFernet  = "Fernet (legacy)"
)

// naclPrefix starts a keyfile encrypted by btwallet (and Python Bittensor
// ≥ 4): "$NACL" || 24-byte nonce || secretbox (16-byte tag || ciphertext).
const naclPrefix = "$NACL"

// naclSalt is the fixed Argon2i salt of Bittensor's keyfile encryption.
var naclSalt = []byte{0x13, 0x71, 0x83, 0xdf, 0xf1, 0x5a, 0x09, 0xbc, 0x9c, 0x90, 0xb5, 0x51, 0x87, 0x39, 0xe9, 0xb1}

// kdfParams are the password-hashing costs. For "$NACL", Bittensor uses
// libsodium's crypto_pwhash_argon2i with OPSLIMIT_SENSITIVE (8 passes) and
// MEMLIMIT_SENSITIVE (536870912 bytes = 524288 KiB), libsodium's fixed
// parallelism of 1 and Argon2 version 0x13. Tests lower the costs.
type kdfParams struct {
	time, memoryKiB uint32
	// fernetIter and ansibleIter are the PBKDF2 round counts of the legacy
	// Fernet and Ansible Vault formats.
	fernetIter, ansibleIter int
}

var sensitive = kdfParams{time: 8, memoryKiB: 536870912 / 1024, fernetIter: fernetIterations, ansibleIter: ansibleIterations}

func (p kdfParams) key(password []byte) *[32]byte {
	k := argon2.Key(password, naclSalt, p.time, p.memoryKiB, 1, 32)
	return (*[32]byte)(k)
}

// EncryptionMethod names the encryption of keyfile data, or returns "" for
// plaintext.
func EncryptionMethod(data []byte) string {
	switch {
	case bytes.HasPrefix(data, []byte(naclPrefix)):
		return MethodNaCl
	case bytes.HasPrefix(data, []byte(ansiblePrefix)):
		return MethodAnsible
	case bytes.HasPrefix(data, []byte(fernetPrefix)):
		return MethodFernet
	}
	return ""
}

// Encrypt encrypts plaintext keyfile data in btwallet's "$NACL" format.
// Deriving the key takes a few seconds and 512 MiB of memory, by design.
func Encrypt(plain, password []byte) ([]byte, error) {
	return encrypt(plain, password, sensitive)
}

func encrypt(plain, password []byte, p kdfParams) ([]byte, error) {
	if len(password) == 0 {
		return nil, errors.New("empty password")
	}
	var nonce [24]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	out := make([]byte, 0, len(naclPrefix)+len(nonce)+secretbox.Overhead+len(plain))
	out = append(out, naclPrefix...)
	out = append(out, nonce[:]...)
	return secretbox.Seal(out, plain, &nonce, p.key(password)), nil
}

// Decrypt decrypts keyfile data encrypted with any method EncryptionMethod
// recognises. A wrong password gives an error wrapping ErrWrongPassword; a
// malformed file one wrapping ErrCorrupt.
func Decrypt(data, password []byte) ([]byte, error) {
	return decrypt(data, password, sensitive)
}

func decrypt(data, password []byte, p kdfParams) ([]byte, error) {
	switch EncryptionMethod(data) {
	case MethodNaCl:
		body := data[len(naclPrefix):]
		if len(body) < 24+secretbox.Overhead {
			return nil, corrupt("NaCl keyfile too short (%d bytes)", len(data))
		}
		plain, ok := secretbox.Open(nil, body[24:], (*[24]byte)(body[:24]), p.key(password))
		if !ok {
			return nil, fmt.Errorf("%w (or the encrypted file is damaged)", ErrWrongPassword)
		}
		return plain, nil
	case MethodAnsible:
		return decryptAnsible(data, password, p.ansibleIter)
	case MethodFernet:
		return decryptFernet(data, password, p.fernetIter)
	}
	return nil, errors.New("keyfile is not encrypted")
}
