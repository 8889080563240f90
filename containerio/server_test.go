package containerio

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// testServer is an IO server run in the test's process.
type testServer struct {
	t *testing.T
	s *server
	l net.Listener
	c Client
}

func startTestServer(t *testing.T, dir string) *testServer {
	t.Helper()
	if err := os.MkdirAll(registrations(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	s := &server{dir: dir, relays: map[string]*relay{}}
	s.restore()
	l, err := listenUnix(controlSocket(dir))
	if err != nil {
		t.Fatal(err)
	}
	go s.serve(l)
	ts := &testServer{t: t, s: s, l: l, c: Client{Dir: dir}}
	t.Cleanup(ts.crash)
	return ts
}

// crash ends the server as a kill would: its registrations stay.
func (ts *testServer) crash() {
	ts.l.Close()
	ts.s.mu.Lock()
	defer ts.s.mu.Unlock()
	for _, r := range ts.s.relays {
		r.closeStreams()
		r.wg.Wait()
		if r.l != nil {
			r.l.Close()
		}
	}
	ts.s.relays = map[string]*relay{}
}

// testContainer makes the fifos of a container and its spec.
func testContainer(t *testing.T, dir, id string, stderr bool) Spec {
	t.Helper()
	cdir := filepath.Join(dir, id)
	if err := os.MkdirAll(cdir, 0o700); err != nil {
		t.Fatal(err)
	}
	spec := Spec{ID: id, Log: filepath.Join(dir, "logs", id+".log"), Socket: filepath.Join(cdir, "attach.sock"), Stdout: filepath.Join(cdir, "stdout")}
	if stderr {
		spec.Stderr = filepath.Join(cdir, "stderr")
	}
	for _, p := range []string{spec.Stdout, spec.Stderr} {
		if p != "" {
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return spec
}

// shimEnd is what the shim holds of an output fifo: its write end, and a
// read end that keeps writes from failing while no server reads.
type shimEnd struct{ w, r *os.File }

func openShimEnd(t *testing.T, path string) *shimEnd {
	t.Helper()
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &shimEnd{w: w, r: r}
}

func (e *shimEnd) write(t *testing.T, s string) {
	t.Helper()
	if _, err := e.w.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func (e *shimEnd) close() { e.w.Close(); e.r.Close() }

func TestServerRelaysOutput(t *testing.T) {
	dir := longDir(t)
	ts := startTestServer(t, dir)
	ctx := context.Background()
	spec := testContainer(t, dir, "c1", true)
	if err := ts.c.Add(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := ts.c.Add(ctx, spec); err != nil {
		t.Fatalf("adding a registered container again: %v", err)
	}
	if has, err := ts.c.Has(ctx, "c1"); err != nil || !has {
		t.Fatalf("Has: %v, %v", has, err)
	}
	conn, err := Dial(spec.Socket, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	attach := newFrameReader(t, conn)
	attach.expect("0:")

	// The task: the shim opens the fifos, the container writes and ends.
	out, errs := openShimEnd(t, spec.Stdout), openShimEnd(t, spec.Stderr)
	out.write(t, "hello\nwor")
	attach.expect("1:hello\nwor")
	errs.write(t, "oops\n")
	attach.expect("2:oops\n")
	out.write(t, "ld\nlast words")
	attach.expect("1:ld\nlast words")
	out.close()
	errs.close()
	var ends []string
	for range 2 {
		stream, p, err := attach.next()
		if err != nil || p != "" {
			t.Fatalf("attach frame %d, %q, %v; want the end of a stream", stream, p, err)
		}
		ends = append(ends, string('0'+stream))
	}
	if slices.Sort(ends); !slices.Equal(ends, []string{"1", "2"}) {
		t.Errorf("ended streams %q, want stdout and stderr", ends)
	}
	if err := ts.c.Drain(ctx, "c1", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got, want := logEntries(t, spec.Log, "stdout"), []string{"F hello", "F world", "P last words"}; !slices.Equal(got, want) {
		t.Errorf("stdout entries %q, want %q", got, want)
	}
	if got, want := logEntries(t, spec.Log, "stderr"), []string{"F oops"}; !slices.Equal(got, want) {
		t.Errorf("stderr entries %q, want %q", got, want)
	}

	// Another task of the container (a retried start) writes to the same
	// fifos; the log was rotated meanwhile.
	if err := os.Rename(spec.Log, spec.Log+".1"); err != nil {
		t.Fatal(err)
	}
	if err := ts.c.Reopen(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	out = openShimEnd(t, spec.Stdout)
	out.write(t, "again\n")
	out.close()
	waitFor(t, "the second task's output in the reopened log", func() bool {
		_, err := os.Stat(spec.Log)
		return err == nil && slices.Equal(logEntries(t, spec.Log, "stdout"), []string{"F again"})
	})

	if err := ts.c.Remove(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := ts.c.Remove(ctx, "c1"); err != nil {
		t.Fatalf("removing a removed container: %v", err)
	}
	for _, f := range []string{spec.Socket, registration(dir, "c1")} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after Remove (%v)", f, err)
		}
	}
	if err := ts.c.Reopen(ctx, "c1"); !errors.Is(err, ErrNotRegistered) {
		t.Errorf("Reopen of a removed container: %v, want ErrNotRegistered", err)
	}
	if err := ts.c.Drain(ctx, "c1", time.Minute); err != nil {
		t.Errorf("Drain of a removed container: %v", err)
	}
}

// A restarted server takes up the containers of the one before it, with
// what they wrote while no server read.
func TestServerRestore(t *testing.T) {
	dir := longDir(t)
	ctx := context.Background()
	first := startTestServer(t, dir)
	spec := testContainer(t, dir, "c1", false) // a terminal: stdout only
	if err := first.c.Add(ctx, spec); err != nil {
		t.Fatal(err)
	}
	out := openShimEnd(t, spec.Stdout)
	out.write(t, "before\n")
	waitFor(t, "the first line", func() bool { return len(logEntries(t, spec.Log, "stdout")) == 1 })
	first.crash()
	out.write(t, "while down\n")

	second := startTestServer(t, dir)
	if ids, err := second.c.List(ctx); err != nil || !slices.Equal(ids, []string{"c1"}) {
		t.Fatalf("List after restart: %q, %v", ids, err)
	}
	out.write(t, "after\n")
	out.close()
	if err := second.c.Drain(ctx, "c1", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got, want := logEntries(t, spec.Log, "stdout"), []string{"F before", "F while down", "F after"}; !slices.Equal(got, want) {
		t.Errorf("entries %q, want %q", got, want)
	}
}

func TestServerRejectsBadSpecs(t *testing.T) {
	dir := longDir(t)
	ts := startTestServer(t, dir)
	good := testContainer(t, dir, "c1", true)
	cases := []struct {
		name   string
		change func(*Spec)
	}{
		{"no ID", func(s *Spec) { s.ID = "" }},
		{"ID with a slash", func(s *Spec) { s.ID = "../x" }},
		{"no stdout", func(s *Spec) { s.Stdout = "" }},
		{"neither log nor socket", func(s *Spec) { s.Log, s.Socket = "", "" }},
		{"missing fifo", func(s *Spec) { s.Stdout = filepath.Join(dir, "nothing") }},
		{"not a fifo", func(s *Spec) { s.Stderr = dir }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := good
			tc.change(&spec)
			if err := ts.c.Add(context.Background(), spec); err == nil {
				t.Fatalf("Add of %+v succeeded", spec)
			}
			if ids, _ := ts.c.List(context.Background()); len(ids) != 0 {
				t.Errorf("registered after a failed Add: %q", ids)
			}
			if entries, _ := os.ReadDir(registrations(dir)); len(entries) != 0 {
				t.Errorf("registration files after a failed Add: %v", entries)
			}
		})
	}
}

func TestClientWithoutServer(t *testing.T) {
	if err := (Client{Dir: t.TempDir()}).Ping(context.Background()); !errors.Is(err, ErrServerDown) {
		t.Errorf("Ping without a server: %v, want ErrServerDown", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("waited in vain for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
