package tlsconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// KeyPair is a certificate and its private key, both PEM encoded.
type KeyPair struct {
	CertPEM []byte
	KeyPEM  []byte
}

// CertRequest describes a certificate to issue.
type CertRequest struct {
	// Identity is the role and id the certificate names.
	Identity Identity
	// DNSNames and IPs are extra names of a server certificate (localhost,
	// 127.0.0.1 and ::1 are always added); other roles may not have any.
	DNSNames []string
	IPs      []net.IP
	// NotBefore is when the certificate becomes valid (normally now).
	NotBefore time.Time
	// Validity is how long it stays valid from NotBefore.
	Validity time.Duration
}

// GenerateCA makes a self-signed certificate authority named name, valid
// from now for validity. rand is the randomness source (crypto/rand.Reader).
func GenerateCA(name string, now time.Time, validity time.Duration, rand io.Reader) (KeyPair, error) {
	if name == "" {
		return KeyPair{}, errors.New("generate CA: name is empty")
	}
	if validity <= 0 {
		return KeyPair{}, fmt.Errorf("generate CA: validity %s must be positive", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand)
	if err != nil {
		return KeyPair{}, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial(rand)
	if err != nil {
		return KeyPair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Banyan"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("sign CA certificate: %w", err)
	}
	return encodePair(der, key)
}

// Issue signs a certificate for req with the CA ca. rand is the randomness
// source (crypto/rand.Reader).
func Issue(ca KeyPair, req CertRequest, rand io.Reader) (KeyPair, error) {
	if err := req.Identity.Validate(); err != nil {
		return KeyPair{}, fmt.Errorf("issue certificate: %w", err)
	}
	if req.Validity <= 0 {
		return KeyPair{}, fmt.Errorf("issue certificate: validity %s must be positive", req.Validity)
	}
	if req.Identity.Role != RoleServer && (len(req.DNSNames) > 0 || len(req.IPs) > 0) {
		return KeyPair{}, fmt.Errorf("issue certificate for %s: only server certificates carry DNS names or IPs", req.Identity)
	}
	caPair, err := tls.X509KeyPair(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		return KeyPair{}, fmt.Errorf("issue certificate: CA certificate and key: %w", err)
	}
	caCert, err := x509.ParseCertificate(caPair.Certificate[0])
	if err != nil {
		return KeyPair{}, fmt.Errorf("issue certificate: parse CA certificate: %w", err)
	}
	if !caCert.IsCA {
		return KeyPair{}, errors.New("issue certificate: the CA certificate is not a certificate authority")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand)
	if err != nil {
		return KeyPair{}, fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial(rand)
	if err != nil {
		return KeyPair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.Identity.String(), Organization: []string{"Banyan"}},
		NotBefore:    req.NotBefore.Add(-time.Minute),
		NotAfter:     req.NotBefore.Add(req.Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{req.Identity.URI()},
	}
	if tmpl.NotAfter.After(caCert.NotAfter) {
		tmpl.NotAfter = caCert.NotAfter
	}
	if req.Identity.Role == RoleServer {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.DNSNames = dedupe(append([]string{"localhost"}, req.DNSNames...))
		tmpl.IPAddresses = dedupeIPs(append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, req.IPs...))
	}
	der, err := x509.CreateCertificate(rand, tmpl, caCert, &key.PublicKey, caPair.PrivateKey)
	if err != nil {
		return KeyPair{}, fmt.Errorf("sign certificate for %s: %w", req.Identity, err)
	}
	return encodePair(der, key)
}

func newSerial(rand io.Reader) (*big.Int, error) {
	serial, err := crand.Int(rand, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

func encodePair(der []byte, key *ecdsa.PrivateKey) (KeyPair, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("encode key: %w", err)
	}
	return KeyPair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func dedupeIPs(in []net.IP) []net.IP {
	seen := map[string]bool{}
	var out []net.IP
	for _, ip := range in {
		if ip != nil && !seen[ip.String()] {
			seen[ip.String()] = true
			out = append(out, ip)
		}
	}
	return out
}

// WritePair writes kp as DIR/NAME.pem (mode 0644) and DIR/NAME-key.pem
// (mode 0600), refusing to overwrite either, and returns both paths.
func WritePair(dir, name string, kp KeyPair) (certPath, keyPath string, err error) {
	certPath = filepath.Join(dir, name+".pem")
	keyPath = filepath.Join(dir, name+"-key.pem")
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("write %s: file exists (remove it first)", p)
		}
	}
	if err := writeNew(keyPath, kp.KeyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeNew(certPath, kp.CertPEM, 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// ReadPair reads a certificate and key written by WritePair (or any PEM pair).
func ReadPair(certPath, keyPath string) (KeyPair, error) {
	c, err := os.ReadFile(certPath)
	if err != nil {
		return KeyPair{}, fmt.Errorf("read certificate: %w", err)
	}
	k, err := os.ReadFile(keyPath)
	if err != nil {
		return KeyPair{}, fmt.Errorf("read key: %w", err)
	}
	return KeyPair{CertPEM: c, KeyPEM: k}, nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
