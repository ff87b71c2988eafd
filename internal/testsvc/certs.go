package testsvc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// certFiles are the files of a self-signed server certificate.
type certFiles struct {
	// Cert is the PEM certificate; clients trust it as their CA.
	Cert string
	// Key is the PEM private key (0600).
	Key string
	// Combined holds the key followed by the certificate (0600), the form
	// ejabberd's certfiles expects.
	Combined string
}

// writeSelfSignedCert creates a self-signed ECDSA P-256 certificate for the
// DNS names (the first is the subject's common name) in dir. The
// certificate is its own CA, so a client can pass the certificate file as
// its CA file and verify the server name.
func writeSelfSignedCert(dir string, names ...string) (certFiles, error) {
	if len(names) == 0 {
		return certFiles{}, fmt.Errorf("self-signed certificate: no DNS name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return certFiles{}, fmt.Errorf("generate certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return certFiles{}, fmt.Errorf("certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0], Organization: []string{"testsvc"}},
		DNSNames:              names,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return certFiles{}, fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return certFiles{}, fmt.Errorf("marshal certificate key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})

	f := certFiles{
		Cert:     filepath.Join(dir, names[0]+".crt"),
		Key:      filepath.Join(dir, names[0]+".key"),
		Combined: filepath.Join(dir, names[0]+".pem"),
	}
	for _, w := range []struct {
		path string
		data []byte
	}{
		{f.Cert, certPEM},
		{f.Key, keyPEM},
		{f.Combined, append(append([]byte{}, keyPEM...), certPEM...)},
	} {
		if err := os.WriteFile(w.path, w.data, 0o600); err != nil {
			return certFiles{}, fmt.Errorf("write certificate file: %w", err)
		}
	}
	return f, nil
}
