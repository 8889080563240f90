package containerio

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The IO server is one process per node that copies every container's
// output to its CRI log and to its attach clients. The shim writes a
// container's stdout and stderr to fifos in the container's state directory
// (as it does for containerd's own CRI); the server reads them.
//
// It runs apart from peapod, so logs flow and attach works while peapod
// restarts, and it keeps what it serves in its directory (one registration
// file per container), so that it takes up every container again when it
// is itself restarted: the shim holds the fifos open meanwhile, and the
// container's output waits in them (it blocks only once the pipe is full),
// as it does in containerd's CRI while containerd restarts.
//
// One process for all containers, rather than one beside each, costs a
// goroutine per stream instead of a process per container: about 0.8 MiB
// of memory per container, and a process start in every StartContainer.

// ServeArg, as the first argument, runs the IO binary as the IO server.
const ServeArg = "serve"

// Spec is how one container's output is wired.
type Spec struct {
	ID     string `json:"id"`
	Log    string `json:"log,omitempty"`    // the CRI log file; none if empty
	Socket string `json:"socket,omitempty"` // the attach socket; none if empty
	Stdout string `json:"stdout"`           // the stdout fifo
	Stderr string `json:"stderr,omitempty"` // the stderr fifo; none with a terminal
}

func (s *Spec) validate() error {
	switch {
	case s.ID == "" || strings.ContainsAny(s.ID, "/\x00") || s.ID == "." || s.ID == "..":
		return fmt.Errorf("bad container ID %q", s.ID)
	case s.Stdout == "":
		return errors.New("no stdout fifo")
	case s.Log == "" && s.Socket == "":
		return errors.New("neither a log path nor an attach socket")
	}
	return nil
}

// The server's files, in its directory.
func controlSocket(dir string) string { return filepath.Join(dir, "control.sock") }
func registrations(dir string) string { return filepath.Join(dir, "containers") }
func registration(dir, id string) string {
	return filepath.Join(registrations(dir), id+".json")
}

// PidFile is where the server records its PID.
func PidFile(dir string) string { return filepath.Join(dir, "server.pid") }

// ServerArgs are the arguments that run the IO binary as the server of dir.
func ServerArgs(dir string) []string { return []string{ServeArg, "--dir", dir} }

// IsServer reports whether the arguments run the IO server.
func IsServer(args []string) bool { return len(args) > 0 && args[0] == ServeArg }

// RunServer runs the IO server with args (after ServeArg). It signals
// readiness on file descriptor 3 when --ready-fd is given, and serves until
// SIGTERM or SIGINT.
func RunServer(args []string) error {
	flags := flag.NewFlagSet(ServeArg, flag.ContinueOnError)
	dir := flags.String("dir", "", "the server's directory")
	readyFD := flags.Int("ready-fd", 0, "a descriptor to write one byte to once serving")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("--dir is required")
	}
	log.SetPrefix("peapod-io: ")
	log.SetFlags(log.LstdFlags | log.Lmicroseconds | log.LUTC)
	if err := os.MkdirAll(registrations(*dir), 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(*dir, "server.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fmt.Errorf("another IO server serves %s: %w", *dir, err)
	}
	s := &server{dir: *dir, relays: map[string]*relay{}}
	s.restore()
	l, err := listenUnix(controlSocket(*dir))
	if err != nil {
		return err
	}
	defer l.Close()
	if err := os.WriteFile(PidFile(*dir), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return err
	}
	if *readyFD > 0 {
		ready := os.NewFile(uintptr(*readyFD), "ready")
		_, _ = ready.Write([]byte{1})
		_ = ready.Close()
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-stop
		log.Printf("%s: stopping; the containers' output waits in their fifos for the next server", sig)
		l.Close()
	}()
	s.serve(l)
	return nil
}

// serve answers the requests of every connection l accepts until l is
// closed.
func (s *server) serve(l net.Listener) {
	for {
		conn, err := l.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		go s.handle(conn)
	}
}

// server is the IO server's state: a relay per registered container.
type server struct {
	dir    string
	mu     sync.Mutex
	relays map[string]*relay
}

// restore takes up every registered container again.
func (s *server) restore() {
	entries, err := os.ReadDir(registrations(s.dir))
	if err != nil {
		log.Printf("reading the registrations: %v", err)
		return
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		path := registration(s.dir, id)
		var spec Spec
		raw, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(raw, &spec)
		}
		if err == nil {
			err = spec.validate()
		}
		if err == nil && spec.ID != id {
			err = fmt.Errorf("it names container %q", spec.ID)
		}
		var r *relay
		if err == nil {
			r, err = startRelay(spec)
		}
		if err != nil {
			log.Printf("dropping the registration of container %s: %v", id, err)
			_ = os.Remove(path)
			continue
		}
		s.relays[id] = r
	}
	if len(s.relays) > 0 {
		log.Printf("took up the output of %d containers", len(s.relays))
	}
}

// The control protocol: one JSON request per connection, one JSON response.
type request struct {
	Op      string        `json:"op"` // add, remove, reopen, drain, has, list, ping
	ID      string        `json:"id,omitempty"`
	Spec    *Spec         `json:"spec,omitempty"`    // add
	Timeout time.Duration `json:"timeout,omitempty"` // drain
}

type response struct {
	Error    string   `json:"error,omitempty"`
	NotFound bool     `json:"notFound,omitempty"` // the container is not registered
	Has      bool     `json:"has,omitempty"`
	IDs      []string `json:"ids,omitempty"`
}

// maxDrain bounds a drain request's wait.
const maxDrain = time.Minute

func (s *server) handle(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var req request
	if err := json.NewDecoder(io.LimitReader(conn, 1<<20)).Decode(&req); err != nil {
		return
	}
	_ = conn.SetDeadline(time.Now().Add(min(req.Timeout, maxDrain) + 10*time.Second))
	var resp response
	if err := s.do(&req, &resp); err != nil {
		resp.Error = err.Error()
	}
	_ = json.NewEncoder(conn).Encode(&resp)
}

func (s *server) do(req *request, resp *response) error {
	if req.Op == "add" {
		if req.Spec == nil {
			return errors.New("add: no spec")
		}
		return s.add(*req.Spec)
	}
	if req.Op == "ping" {
		return nil
	}
	if req.Op == "list" {
		s.mu.Lock()
		for id := range s.relays {
			resp.IDs = append(resp.IDs, id)
		}
		s.mu.Unlock()
		return nil
	}
	s.mu.Lock()
	r := s.relays[req.ID]
	s.mu.Unlock()
	switch req.Op {
	case "has":
		resp.Has = r != nil
		return nil
	case "remove":
		return s.remove(req.ID)
	case "drain":
		if r != nil {
			r.drain(min(req.Timeout, maxDrain))
		}
		return nil
	case "reopen":
		if r == nil {
			resp.NotFound = true
			return fmt.Errorf("container %s is not registered", req.ID)
		}
		if r.log == nil {
			return nil
		}
		if err := r.log.reopen(); err != nil {
			return fmt.Errorf("reopening %s: %w", r.spec.Log, err)
		}
		return nil
	}
	return fmt.Errorf("unknown request %q", req.Op)
}

// add registers a container and starts reading its output. Adding one that
// is registered again is a no-op: its relay takes the output of any task of
// the container, as it reads the same fifos (see relayStream.run).
func (s *server) add(spec Spec) error {
	if err := spec.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.relays[spec.ID]; ok {
		return nil
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	path := registration(s.dir, spec.ID)
	if err := writeFileAtomic(path, raw); err != nil {
		return fmt.Errorf("registering container %s: %w", spec.ID, err)
	}
	r, err := startRelay(spec)
	if err != nil {
		_ = os.Remove(path)
		return err
	}
	s.relays[spec.ID] = r
	return nil
}

// remove stops serving a container (it was removed); an unknown one is
// fine.
func (s *server) remove(id string) error {
	s.mu.Lock()
	r := s.relays[id]
	delete(s.relays, id)
	s.mu.Unlock()
	if r != nil {
		r.stop()
	}
	if err := os.Remove(registration(s.dir, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// relay copies one container's output streams to its log and its attach
// clients.
type relay struct {
	spec    Spec
	log     *criLog // nil without a log path
	hub     *hub
	l       *net.UnixListener // nil without an attach socket
	streams []*relayStream
	wg      sync.WaitGroup
}

// relayStream is one output stream of a relay.
type relayStream struct {
	id   byte // StreamStdout or StreamStderr
	path string

	mu     sync.Mutex
	r      *fifoReader
	ended  bool // its last writer has gone, and none has written since
	closed bool
}

func startRelay(spec Spec) (*relay, error) {
	r := &relay{spec: spec, hub: newHub()}
	for _, s := range []struct {
		path string
		id   byte
	}{{spec.Stdout, StreamStdout}, {spec.Stderr, StreamStderr}} {
		if s.path == "" {
			continue
		}
		f, err := openFifo(s.path)
		if err != nil {
			r.closeStreams()
			return nil, fmt.Errorf("container %s: %w", spec.ID, err)
		}
		r.streams = append(r.streams, &relayStream{id: s.id, path: s.path, r: f})
	}
	if spec.Log != "" {
		var err error
		if r.log, err = openLog(spec.Log); err != nil {
			r.closeStreams()
			return nil, fmt.Errorf("container %s: opening its log: %w", spec.ID, err)
		}
	}
	if spec.Socket != "" {
		// Without its socket the container only loses attach: its output
		// must still be read, or the container would block on it.
		if l, err := listenUnix(spec.Socket); err != nil {
			log.Printf("container %s: %v", spec.ID, err)
		} else {
			r.l = l
			go r.hub.serve(l)
		}
	}
	for _, st := range r.streams {
		r.wg.Go(func() { st.run(r) })
	}
	return r, nil
}

// run copies the stream until the relay stops. At the end of a writer's
// output (the container's), it writes what is left of the last line and
// tells attach clients, then waits for another writer: the task of a
// retried StartContainer writes to the same fifos.
func (st *relayStream) run(r *relay) {
	var lw *lineWriter
	if r.log != nil {
		lw = &lineWriter{log: r.log, stream: streamName(st.id)}
	}
	out := r.hub.writer(st.id)
	for {
		st.mu.Lock()
		f := st.r
		st.mu.Unlock()
		if f == nil {
			return
		}
		err := f.next(func(p []byte) {
			if st.setEnded(false) {
				r.hub.resume(st.id)
			}
			_, _ = out.Write(p)
			if lw != nil {
				_, _ = lw.Write(p)
			}
		})
		if err == nil {
			continue
		}
		if lw != nil {
			lw.end()
		}
		if !errors.Is(err, io.EOF) {
			if !st.isClosed() {
				log.Printf("container %s: reading %s: %v", r.spec.ID, st.path, err)
			}
			return
		}
		r.hub.end(st.id)
		if !st.reopen() {
			return
		}
	}
}

// setEnded sets whether the stream is at its end; it reports whether that
// changed.
func (st *relayStream) setEnded(ended bool) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	changed := st.ended != ended
	st.ended = ended
	return changed
}

func (st *relayStream) isClosed() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.closed
}

// reopen replaces the reader of an ended stream by a fresh one, which
// waits quietly for the next writer (the old one would report the hang-up
// for ever). It reports whether the stream goes on.
func (st *relayStream) reopen() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.ended = true
	if st.closed {
		return false
	}
	st.r.Close()
	f, err := openFifo(st.path)
	if err != nil {
		log.Printf("reopening %s: %v", st.path, err)
		st.r = nil
		return false
	}
	st.r = f
	return true
}

// drained reports whether every stream is at its end.
func (r *relay) drained() bool {
	for _, st := range r.streams {
		st.mu.Lock()
		ended := st.ended || st.closed || st.r == nil
		st.mu.Unlock()
		if !ended {
			return false
		}
	}
	return true
}

// drain waits, up to timeout, until the output of the container's last
// task is all written: every stream is at its end.
func (r *relay) drain(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for !r.drained() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *relay) closeStreams() {
	for _, st := range r.streams {
		st.mu.Lock()
		st.closed = true
		if st.r != nil {
			st.r.Close()
		}
		st.mu.Unlock()
	}
}

// stop ends the relay: its streams, its log and its attach socket.
func (r *relay) stop() {
	r.closeStreams()
	r.wg.Wait()
	if r.log != nil {
		r.log.close()
	}
	if r.l != nil {
		r.l.Close()
		_ = os.Remove(r.spec.Socket)
	}
	go r.hub.close(hubCloseTimeout)
}

func streamName(id byte) string {
	if id == StreamStderr {
		return "stderr"
	}
	return "stdout"
}
