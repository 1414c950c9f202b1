package wallet

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// Legacy formats of Bittensor releases before the NaCl format (2021–2022),
// read but never written.
const (
	// ansiblePrefix starts Ansible Vault 1.1 text (AES256): a header line,
	// then hex lines of hex(salt) "\n" hex(HMAC-SHA256) "\n" hex(ciphertext);
	// PBKDF2-HMAC-SHA256 (10000 rounds) of the password gives the AES-256-CTR
	// key, the HMAC key and the initial counter.
	ansiblePrefix     = "$ANSIBLE_VAULT"
	ansibleIterations = 10000
	// fernetPrefix starts a Fernet token (base64url of version byte 0x80).
	// Bittensor derived its key with PBKDF2-HMAC-SHA256, 10,000,000 rounds,
	// and the fixed salt fernetSalt.
	fernetPrefix     = "gAAAAA"
	fernetIterations = 10_000_000
	fernetSalt       = "Iguesscyborgslikemyselfhaveatendencytobeparanoidaboutourorigins"
)

func decryptAnsible(data, password []byte, iterations int) ([]byte, error) {
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	header := bytes.Split(bytes.TrimSpace(lines[0]), []byte(";"))
	if len(header) < 3 || string(header[0]) != ansiblePrefix || string(bytes.TrimSpace(header[2])) != "AES256" {
		return nil, corrupt("unsupported Ansible Vault header")
	}
	var hexBody []byte
	for _, l := range lines[1:] {
		hexBody = append(hexBody, bytes.TrimSpace(l)...)
	}
	body := make([]byte, hex.DecodedLen(len(hexBody)))
	if _, err := hex.Decode(body, hexBody); err != nil {
		return nil, corrupt("Ansible Vault body is not hex")
	}
	parts := bytes.Split(body, []byte("\n"))
	if len(parts) != 3 {
		return nil, corrupt("Ansible Vault body has %d parts, want 3", len(parts))
	}
	salt, err1 := hex.DecodeString(string(parts[0]))
	mac, err2 := hex.DecodeString(string(parts[1]))
	ct, err3 := hex.DecodeString(string(parts[2]))
	if err1 != nil || err2 != nil || err3 != nil || len(mac) != sha256.Size || len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, corrupt("malformed Ansible Vault body")
	}
	dk, err := pbkdf2.Key(sha256.New, string(password), salt, iterations, 2*32+aes.BlockSize)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	h := hmac.New(sha256.New, dk[32:64])
	h.Write(ct)
	if !hmac.Equal(h.Sum(nil), mac) {
		return nil, fmt.Errorf("%w (or the encrypted file is damaged)", ErrWrongPassword)
	}
	block, err := aes.NewCipher(dk[:32])
	if err != nil {
		return nil, err
	}
	plain := make([]byte, len(ct))
	cipher.NewCTR(block, dk[64:]).XORKeyStream(plain, ct)
	return unpadPKCS7(plain)
}

func decryptFernet(data, password []byte, iterations int) ([]byte, error) {
	tok := bytes.TrimSpace(data)
	raw := make([]byte, base64.URLEncoding.DecodedLen(len(tok)))
	n, err := base64.URLEncoding.Decode(raw, tok)
	if err != nil {
		return nil, corrupt("Fernet token is not base64url")
	}
	raw = raw[:n]
	// version (1) | timestamp (8) | IV (16) | ciphertext | HMAC (32)
	if len(raw) < 1+8+16+aes.BlockSize+sha256.Size || raw[0] != 0x80 || (len(raw)-1-8-16-sha256.Size)%aes.BlockSize != 0 {
		return nil, corrupt("malformed Fernet token")
	}
	key, err := pbkdf2.Key(sha256.New, string(password), []byte(fernetSalt), iterations, 32)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	signed, mac := raw[:len(raw)-sha256.Size], raw[len(raw)-sha256.Size:]
	h := hmac.New(sha256.New, key[:16])
	h.Write(signed)
	if !hmac.Equal(h.Sum(nil), mac) {
		return nil, fmt.Errorf("%w (or the encrypted file is damaged)", ErrWrongPassword)
	}
	block, err := aes.NewCipher(key[16:])
	if err != nil {
		return nil, err
	}
	iv, ct := signed[9:25], signed[25:]
	plain := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, ct)
	return unpadPKCS7(plain)
}

func unpadPKCS7(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, corrupt("empty plaintext")
	}
	n := int(b[len(b)-1])
	if n == 0 || n > aes.BlockSize || n > len(b) {
		return nil, corrupt("bad padding")
	}
	for _, c := range b[len(b)-n:] {
		if int(c) != n {
			return nil, corrupt("bad padding")
		}
	}
	return b[:len(b)-n], nil
}
