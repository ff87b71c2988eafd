// Package secrets encrypts secret parameters at rest.
//
// A Box holds a 256-bit key read from <dataDir>/secret.key (created on first
// use) and seals values with AES-256-GCM. A sealed value carries a format
// version and the key's id, so that a value sealed under another key file
// (the file was lost and recreated) is told apart from a damaged one. The
// associated data ("profile/category.name") binds a sealed value to its
// place: moved elsewhere, it does not open.
package secrets

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// KeyFileName is the name of the key file inside the data directory.
const KeyFileName = "secret.key"

const (
	keySize   = 32 // AES-256
	keyIDSize = 8
	nonceSize = 12
	version1  = 1
	headerLen = 1 + keyIDSize
	overhead  = headerLen + nonceSize + 16 // + GCM tag
)

// ErrWrongKey is returned by Open for a value sealed under another key file.
var ErrWrongKey = errors.New("secret was encrypted with another key file: set it again with `backend profile set NAME KEY -`")

// ErrCorrupt is returned by Open for a value that is damaged, tampered with,
// of an unknown format, or sealed for other associated data.
var ErrCorrupt = errors.New("secret is corrupt or was sealed for another parameter: set it again with `backend profile set NAME KEY -`")

// Box seals and opens secrets with the key of one key file. It is safe for
// concurrent use.
type Box struct {
	path  string
	keyID [keyIDSize]byte
	aead  cipher.AEAD
}

// OpenBox loads the key file <dataDir>/secret.key, or creates it (32 random
// bytes, mode 0600) when it does not exist. The data directory is created
// with mode 0700 if missing. Concurrent callers, in one process or several,
// end up with the same key. A key file readable by group or others, or of
// the wrong size, is refused with an error saying how to fix it.
func OpenBox(dataDir string) (*Box, error) {
	if dataDir == "" {
		return nil, errors.New("open secret key: empty data directory")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("open secret key: create data directory: %w", err)
	}
	path := filepath.Join(dataDir, KeyFileName)
	key, err := loadKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = createKey(path)
	}
	if err != nil {
		return nil, err
	}
	return newBox(path, key)
}

func newBox(path string, key []byte) (*Box, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("open secret key %s: %w", path, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("open secret key %s: %w", path, err)
	}
	b := &Box{path: path, aead: aead}
	sum := sha256.Sum256(key)
	copy(b.keyID[:], sum[:keyIDSize])
	return b, nil
}

// loadKey reads and checks an existing key file; a missing one gives an
// error wrapping fs.ErrNotExist.
func loadKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("open secret key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open secret key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("open secret key: %s is not a regular file: move it away", path)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fmt.Errorf("open secret key: %s has mode %04o and is readable by group or others: "+
			"run `chmod 600 %s` (and consider whether someone may have copied it)", path, perm, path)
	}
	if fi.Size() != keySize {
		return nil, fmt.Errorf("open secret key: %s holds %d bytes instead of %d, it is damaged: "+
			"restore it from a backup, or move it away to let a new key be created "+
			"(then set every secret parameter again with `backend profile set NAME KEY -`)",
			path, fi.Size(), keySize)
	}
	key := make([]byte, keySize)
	if _, err := io.ReadFull(f, key); err != nil {
		return nil, fmt.Errorf("open secret key: read %s: %w", path, err)
	}
	return key, nil
}

// createKey writes a new random key to path without ever exposing a partly
// written file: the key goes to a temporary file (created with O_EXCL, mode
// 0600) that is then hard-linked to path, which fails if path exists. Where
// hard links are not supported, path itself is created with O_EXCL. If
// another caller won the race, its key is loaded.
func createKey(path string) ([]byte, error) {
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("create secret key: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+KeyFileName+".*.tmp") // O_EXCL, mode 0600
	if err != nil {
		return nil, fmt.Errorf("create secret key: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := writeSync(tmp, key); err != nil {
		return nil, fmt.Errorf("create secret key: write %s: %w", tmpName, err)
	}

	err = os.Link(tmpName, path)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrExist):
		return loadKey(path) // another caller created it first
	default:
		// No hard links here (some network or FUSE file systems).
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return loadKey(path)
		}
		if err != nil {
			return nil, fmt.Errorf("create secret key: %w", err)
		}
		if err := writeSync(f, key); err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("create secret key: write %s: %w", path, err)
		}
	}
	syncDir(dir)
	return key, nil
}

func writeSync(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a new directory entry durable, as far as the system allows.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// KeyPath returns the path of the key file.
func (b *Box) KeyPath() string { return b.path }

// KeyID returns the key's id in hex: the first 8 bytes of the SHA-256 of the
// key. It identifies the key without revealing it.
func (b *Box) KeyID() string { return hex.EncodeToString(b.keyID[:]) }

// additionalData binds the header and the caller's aad.
func additionalData(header []byte, aad string) []byte {
	ad := make([]byte, 0, len(header)+len(aad))
	ad = append(ad, header...)
	return append(ad, aad...)
}

// Seal encrypts plaintext with AES-256-GCM and a random nonce, bound to aad
// (e.g. "profile/category.name"). The result is
// version (1 byte) | key id (8) | nonce (12) | ciphertext and tag.
func (b *Box) Seal(plaintext []byte, aad string) ([]byte, error) {
	out := make([]byte, headerLen+nonceSize, overhead+len(plaintext))
	out[0] = version1
	copy(out[1:headerLen], b.keyID[:])
	if _, err := rand.Read(out[headerLen:]); err != nil {
		return nil, fmt.Errorf("seal secret: %w", err)
	}
	nonce := out[headerLen : headerLen+nonceSize]
	return b.aead.Seal(out, nonce, plaintext, additionalData(out[:headerLen], aad)), nil
}

// Open decrypts a value made by Seal with the same aad. A value sealed
// under another key file gives ErrWrongKey; a damaged or tampered one, or
// one sealed for another aad, gives ErrCorrupt.
func (b *Box) Open(ciphertext []byte, aad string) ([]byte, error) {
	if len(ciphertext) < overhead || ciphertext[0] != version1 {
		return nil, ErrCorrupt
	}
	if !bytes.Equal(ciphertext[1:headerLen], b.keyID[:]) {
		return nil, ErrWrongKey
	}
	nonce := ciphertext[headerLen : headerLen+nonceSize]
	plain, err := b.aead.Open(nil, nonce, ciphertext[headerLen+nonceSize:], additionalData(ciphertext[:headerLen], aad))
	if err != nil {
		return nil, ErrCorrupt
	}
	return plain, nil
}

// SealedKeyID returns the id (as KeyID gives it) of the key a sealed value
// was sealed with, without opening it; ok is false for a value of an
// unknown format.
func SealedKeyID(sealed []byte) (id string, ok bool) {
	if len(sealed) < overhead || sealed[0] != version1 {
		return "", false
	}
	return hex.EncodeToString(sealed[1:headerLen]), true
}

// KeyExists reports whether dataDir holds a key file.
func KeyExists(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, KeyFileName))
	return err == nil
}
