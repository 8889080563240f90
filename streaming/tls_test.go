package streaming

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	clientremotecommand "k8s.io/client-go/tools/remotecommand"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// testCA is a certificate authority for tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key signed by the CA: a server
// certificate for 127.0.0.1, or a client one.
func (ca *testCA) issue(t *testing.T, serial int64, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "peapod-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// execOverTLS runs "echo hello" through the server with client-go's SPDY
// or WebSocket executor, trusting ca, presenting the client pair if given.
func execOverTLS(t *testing.T, s *Server, websocket bool, ca, clientCert, clientKey []byte) (string, error) {
	t.Helper()
	resp, err := s.GetExec(&runtime.ExecRequest{ContainerId: "c1", Cmd: []string{"echo", "hello"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.Url, "https://") {
		t.Fatalf("exec URL %s is not https", resp.Url)
	}
	cfg := &rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: ca, CertData: clientCert, KeyData: clientKey}}
	newExecutor := func(rawURL string) (clientremotecommand.Executor, error) {
		if websocket {
			return clientremotecommand.NewWebSocketExecutor(cfg, http.MethodGet, rawURL)
		}
		u, err := url.Parse(rawURL)
		if err != nil {
			return nil, err
		}
		return clientremotecommand.NewSPDYExecutor(cfg, http.MethodPost, u)
	}
	out, _, err := stream(t, newExecutor, resp.Url, false, "", true, false, false, nil)
	return out, err
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "streaming CA")
	files := TLS{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	cert, key := ca.issue(t, 2, true)
	writeFile(t, files.CertFile, cert)
	writeFile(t, files.KeyFile, key)
	s := startServerTLS(t, fakeRuntime{}, files)

	for _, websocket := range []bool{false, true} {
		out, err := execOverTLS(t, s, websocket, ca.pem, nil, nil)
		if err != nil || out != "hello" {
			t.Errorf("exec over TLS (websocket %v) = %q, %v", websocket, out, err)
		}
	}
	// A client that does not trust the CA does not get through.
	other := newCA(t, "another CA")
	if _, err := execOverTLS(t, s, false, other.pem, nil, nil); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("exec trusting another CA: %v, want a certificate error", err)
	}

	// Rotation: new files are served from the next handshake on.
	serial := func() int64 {
		conn, err := tls.Dial("tcp", s.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != 2 {
		t.Fatalf("serving certificate %d, want 2", got)
	}
	cert, key = ca.issue(t, 3, true)
	writeFile(t, files.CertFile, cert)
	writeFile(t, files.KeyFile, key)
	future := time.Now().Add(time.Minute) // a new mtime, even on coarse clocks
	for _, f := range []string{files.CertFile, files.KeyFile} {
		if err := os.Chtimes(f, future, future); err != nil {
			t.Fatal(err)
		}
	}
	if got := serial(); got != 3 {
		t.Errorf("after rotation, serving certificate %d, want 3", got)
	}
	// A broken file keeps the last good pair.
	writeFile(t, files.KeyFile, []byte("not a key"))
	if got := serial(); got != 3 {
		t.Errorf("with a broken key file, serving certificate %d, want the last good one, 3", got)
	}
}

func TestTLSClientCA(t *testing.T) {
	dir := t.TempDir()
	ca, clients := newCA(t, "streaming CA"), newCA(t, "client CA")
	files := TLS{
		CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
		ClientCAFile: filepath.Join(dir, "clients.crt"),
	}
	cert, key := ca.issue(t, 2, true)
	writeFile(t, files.CertFile, cert)
	writeFile(t, files.KeyFile, key)
	writeFile(t, files.ClientCAFile, clients.pem)
	s := startServerTLS(t, fakeRuntime{}, files)

	clientCert, clientKey := clients.issue(t, 10, false)
	if out, err := execOverTLS(t, s, false, ca.pem, clientCert, clientKey); err != nil || out != "hello" {
		t.Errorf("exec with a client certificate = %q, %v", out, err)
	}
	if _, err := execOverTLS(t, s, false, ca.pem, nil, nil); err == nil {
		t.Error("exec without a client certificate got through")
	}
	strangerCert, strangerKey := newCA(t, "stranger").issue(t, 11, false)
	if _, err := execOverTLS(t, s, false, ca.pem, strangerCert, strangerKey); err == nil {
		t.Error("exec with a client certificate of another CA got through")
	}
}

func TestTLSBadFiles(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "streaming CA")
	cert, key := ca.issue(t, 2, true)
	good := TLS{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	writeFile(t, good.CertFile, cert)
	writeFile(t, good.KeyFile, key)
	writeFile(t, filepath.Join(dir, "junk"), []byte("junk"))
	for name, files := range map[string]TLS{
		"missing certificate": {CertFile: filepath.Join(dir, "none.crt"), KeyFile: good.KeyFile},
		"key of no use":       {CertFile: good.CertFile, KeyFile: filepath.Join(dir, "junk")},
		"missing client CA":   {CertFile: good.CertFile, KeyFile: good.KeyFile, ClientCAFile: filepath.Join(dir, "none.crt")},
		"client CA not PEM":   {CertFile: good.CertFile, KeyFile: good.KeyFile, ClientCAFile: filepath.Join(dir, "junk")},
	} {
		if s, err := New("127.0.0.1:0", files, fakeRuntime{}, fakeRuntime{}); err == nil {
			s.listener.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
}
