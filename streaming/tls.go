package streaming

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"

	"k8s.io/klog/v2"
)

// TLS configures the streaming server's TLS. With no certificate it
// serves plain HTTP.
type TLS struct {
	// CertFile and KeyFile are the server's certificate (PEM, chain
	// allowed) and private key. Both are read again when either changes, so
	// a rotated certificate is served without a restart.
	CertFile, KeyFile string
	// ClientCAFile, when set, makes the server require client
	// certificates signed by one of its CAs (PEM).
	ClientCAFile string
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// config returns the server's tls.Config, having loaded every file once,
// so that a bad file stops peapod at start-up.
func (t TLS) config() (*tls.Config, error) {
	kp := &keyPair{certFile: t.CertFile, keyFile: t.KeyFile}
	if err := kp.reload(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: kp.get,
		// SPDY and WebSocket upgrade HTTP/1.1 connections.
		NextProtos: []string{"http/1.1"},
	}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("streaming client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("streaming client CA %s holds no PEM certificate", t.ClientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// keyPair serves a certificate and key from files, loaded again when
// either file changes; a reload that fails keeps the last good pair.
type keyPair struct {
	certFile, keyFile string

	mu    sync.Mutex
	cert  *tls.Certificate
	stamp string // the files' sizes and modification times when loaded
}

func (k *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if stamp := k.filesStamp(); stamp != k.stamp {
		if err := k.reloadLocked(stamp); err != nil {
			klog.ErrorS(err, "Reloading the streaming server's certificate; serving the previous one")
			k.stamp = stamp // do not retry on every handshake until the files change again
		}
	}
	return k.cert, nil
}

func (k *keyPair) reload() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.reloadLocked(k.filesStamp())
}

func (k *keyPair) reloadLocked(stamp string) error {
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("streaming certificate %s and key %s: %w", k.certFile, k.keyFile, err)
	}
	if k.cert != nil {
		klog.InfoS("Streaming server certificate reloaded", "cert", k.certFile)
	}
	k.cert, k.stamp = &cert, stamp
	return nil
}

// filesStamp identifies the current content of the two files cheaply.
func (k *keyPair) filesStamp() string {
	var s string
	for _, f := range []string{k.certFile, k.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return s
}
