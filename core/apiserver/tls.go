package apiserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Self-signed certificate files in the data directory (mode 0600).
const (
	SelfSignedCert = "api-tls.crt"
	SelfSignedKey  = "api-tls.key"
)

// Fingerprint is the SHA-256 of a certificate's DER bytes, lowercase hex
// (what `--tls-fingerprint` pins).
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// NormalizeFingerprint accepts a fingerprint as hex with or without colons,
// any case, with an optional "sha256:" prefix; it returns lowercase hex.
func NormalizeFingerprint(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "sha256:")
	s = strings.ReplaceAll(s, ":", "")
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("TLS fingerprint %q is not a SHA-256 in hex (64 hex digits, colons allowed)", s)
	}
	return s, nil
}

// LoadOrCreateCertificate returns the TCP listener's certificate: certFile
// and keyFile (api.tls_cert, api.tls_key) when given, else the self-signed
// certificate in dataDir, created (ECDSA P-256, valid ten years, for
// localhost, the loopback addresses, this host's name and the listener's
// host) when missing or expired. It also returns the leaf's fingerprint.
func LoadOrCreateCertificate(certFile, keyFile, dataDir, listenAddr string) (*tls.Certificate, string, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, "", errors.New("api.tls_cert and api.tls_key go together: set both, or neither for a self-signed certificate")
	}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, "", fmt.Errorf("api.tls_cert/api.tls_key: %w", err)
		}
		return &c, Fingerprint(c.Certificate[0]), nil
	}
	certFile, keyFile = filepath.Join(dataDir, SelfSignedCert), filepath.Join(dataDir, SelfSignedKey)
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err == nil {
		leaf, perr := x509.ParseCertificate(c.Certificate[0])
		if perr == nil && time.Now().Before(leaf.NotAfter.Add(-24*time.Hour)) && coversHost(leaf, listenAddr) {
			return &c, Fingerprint(c.Certificate[0]), nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("self-signed API certificate %s: %w (remove both files to get a new one)", certFile, err)
	}
	certPEM, keyPEM, err := selfSigned(listenAddr)
	if err != nil {
		return nil, "", err
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{keyFile, keyPEM}, {certFile, certPEM}} {
		if err := writeFile0600(f.path, f.data); err != nil {
			return nil, "", err
		}
	}
	c, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, "", err
	}
	return &c, Fingerprint(c.Certificate[0]), nil
}

func coversHost(leaf *x509.Certificate, listenAddr string) bool {
	host, _, err := net.SplitHostPort(listenAddr)
	if err != nil || host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
		return true
	}
	return leaf.VerifyHostname(host) == nil
}

func selfSigned(listenAddr string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "backend API (self-signed)"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	if host, _, err := net.SplitHostPort(listenAddr); err == nil && host != "" {
		if ip := net.ParseIP(host); ip != nil {
			if !ip.IsUnspecified() && !ip.IsLoopback() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if host != "localhost" {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create self-signed API certificate: %w", err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), nil
}

// writeFile0600 replaces path with data, mode 0600, through a temporary file.
func writeFile0600(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
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
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
