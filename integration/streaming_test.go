//go:build integration

package integration

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// streamingPKI makes, with openssl, a CA and two certificates it signs: the
// streaming server's (for 127.0.0.1) and a client's. It returns the
// directory holding ca.crt, tls.crt/tls.key and client.crt/client.key.
func streamingPKI(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ec := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"}
	run(append([]string{"req", "-x509", "-days", "1", "-subj", "/CN=peapod-test-ca", "-keyout", "ca.key", "-out", "ca.crt"}, ec...)...)
	for name, ext := range map[string]string{
		"tls":    "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
		"client": "extendedKeyUsage=clientAuth\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name+".ext"), []byte(ext), 0o600); err != nil {
			t.Fatal(err)
		}
		run(append([]string{"req", "-subj", "/CN=peapod-test-" + name, "-keyout", name + ".key", "-out", name + ".csr"}, ec...)...)
		run("x509", "-req", "-days", "1", "-in", name+".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
			"-extfile", name+".ext", "-out", name+".crt")
	}
	return dir
}

// TestStreamingTLS: with streaming-tls-* set, exec URLs are https, a client
// trusting the CA and presenting a certificate the client CA signed runs a
// command in a container, and a client without one is turned away.
func TestStreamingTLS(t *testing.T) {
	t.Parallel()
	pki := streamingPKI(t)
	e := newPodEnv(t)
	e.config = fmt.Sprintf("streaming-tls-cert = %q\nstreaming-tls-key = %q\nstreaming-tls-client-ca = %q\n",
		filepath.Join(pki, "tls.crt"), filepath.Join(pki, "tls.key"), filepath.Join(pki, "ca.crt"))
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("tls")
	c := startContainer(t, rt, runPod(t, rt, cfg), cfg, busybox("app", "sleep 1000"))

	caPEM, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	client, err := tls.LoadX509KeyPair(filepath.Join(pki, "client.crt"), filepath.Join(pki, "client.key"))
	if err != nil {
		t.Fatal(err)
	}

	req := &runtime.ExecRequest{ContainerId: c, Cmd: []string{"sh", "-c", "echo tls-$((6*7))"}, Stdout: true, Stderr: true}
	resp, err := rt.Exec(callCtx(t), req)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if !strings.HasPrefix(resp.Url, "https://127.0.0.1:") {
		t.Fatalf("exec URL %s is not https on loopback", resp.Url)
	}
	s := openSession(t, resp.Url, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{client}}, req)
	s.expect("stdout", s.stdout, "tls-42")
	s.waitSuccess()

	// Without a client certificate, no session.
	resp, err = rt.Exec(callCtx(t), req)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	if r, err := hc.Post(resp.Url, "", nil); err == nil {
		r.Body.Close()
		t.Errorf("a client without a certificate got HTTP %d from %s", r.StatusCode, resp.Url)
	}
}

// A streaming certificate that cannot be loaded stops peapod at start-up,
// naming the file.
func TestStreamingTLSBadCertificate(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	cfg := filepath.Join(dir, "config.toml")
	missing := filepath.Join(dir, "no-such.crt")
	content := fmt.Sprintf("streaming-tls-cert = %q\nstreaming-tls-key = %q\n", missing, filepath.Join(dir, "no-such.key"))
	if err := os.WriteFile(cfg, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	d := start(t, options{socket: filepath.Join(dir, "peapod.sock"), configFile: cfg})
	if code := d.wait(10 * time.Second); code == 0 {
		t.Errorf("peapod exited 0 with a missing streaming certificate")
	}
	if !strings.Contains(d.stderr.String(), missing) {
		t.Errorf("stderr does not name the certificate:\n%s", d.stderr.String())
	}
}
