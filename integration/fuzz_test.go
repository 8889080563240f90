//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fuzzCalls is how many generated requests TestFuzzCRI sends (at least
// 10,000, as the issue asks); PEAPOD_FUZZ_CALLS overrides it.
const fuzzCalls = 10000

// TestFuzzCRI sends peapod thousands of generated and mutated requests on
// every CRI method: missing, empty and huge fields, odd IDs (unknown, valid,
// prefixes, garbage), bad paths, extreme numbers. No call may panic, none
// may answer Unknown (every refusal has its code), and peapod must still
// serve afterwards. Strings that reach the outside world are drawn from
// safe pools: image references never name a host off the machine, paths
// stay in the test's directory or name harmless system files.
func TestFuzzCRI(t *testing.T) {
	t.Parallel()
	e := newPodEnv(t)
	rt, ic := e.serve()
	pull(t, ic, busyboxRef)
	cfg := e.podConfig("fuzz-target")
	sbID := runPod(t, rt, cfg)
	ctrID := startContainer(t, rt, sbID, cfg, busybox("target", "exec sleep 3600"))

	n := fuzzCalls
	if v := os.Getenv("PEAPOD_FUZZ_CALLS"); v != "" {
		fmt.Sscan(v, &n)
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("PEAPOD_FUZZ_SEED"); v != "" {
		fmt.Sscan(v, &seed)
	}
	t.Logf("seed %d (PEAPOD_FUZZ_SEED to repeat), %d calls", seed, n)
	f := &fuzzer{
		r:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		ids:   []string{sbID, ctrID, sbID[:12], ctrID[:6], ""},
		paths: []string{e.dir + "/fuzz/a.tar", e.dir + "/fuzz/logs", e.dir + "/fuzz/../fuzz/x", "/dev/null", "/proc/self/status"},
	}
	if err := os.MkdirAll(filepath.Join(e.dir, "fuzz"), 0o755); err != nil {
		t.Fatal(err)
	}

	var methods []protoreflect.MethodDescriptor
	services := runtime.File_staging_src_k8s_io_cri_api_pkg_apis_runtime_v1_api_proto.Services()
	for i := range services.Len() {
		ms := services.Get(i).Methods()
		for j := range ms.Len() {
			methods = append(methods, ms.Get(j))
		}
	}
	conn := e.d.dial()
	codesSeen := map[string]map[codes.Code]int{}
	var unknown, hung []string
	start := time.Now()
	for i := range n {
		m := methods[f.r.IntN(len(methods))]
		req := dynamicpb.NewMessage(m.Input())
		f.fill(req, 0)
		code, err, unanswered := f.call(conn, m, req)
		name := string(m.Name())
		if codesSeen[name] == nil {
			codesSeen[name] = map[codes.Code]int{}
		}
		codesSeen[name][code]++
		if code == codes.Unknown || code == codes.Internal {
			if len(unknown) < 20 {
				unknown = append(unknown, fmt.Sprintf("%s: %v (request %v)", name, err, truncate(fmt.Sprint(req), 300)))
			}
		}
		if unanswered && !waitsOutItsTimeout(m, req) && len(hung) < 20 {
			hung = append(hung, fmt.Sprintf("%s (request %v)", name, truncate(fmt.Sprint(req), 300)))
		}
		if i%1000 == 999 {
			if d := e.d; d != nil {
				select {
				case <-d.exited:
					t.Fatalf("peapod exited after %d calls: %v\n%s", i+1, d.waitErr, tail(d.stderr.String(), 3000))
				default:
				}
			}
		}
	}
	took := time.Since(start)

	var lines []string
	for name, cs := range codesSeen {
		var parts []string
		for c, k := range cs {
			parts = append(parts, fmt.Sprintf("%s %d", c, k))
		}
		sort.Strings(parts)
		lines = append(lines, fmt.Sprintf("%-28s %s", name, strings.Join(parts, ", ")))
	}
	sort.Strings(lines)
	t.Logf("%d calls in %s (%.0f/s), answers by method:\n%s", n, took.Round(time.Millisecond), float64(n)/took.Seconds(), strings.Join(lines, "\n"))
	for _, u := range unknown {
		t.Errorf("answered Unknown or Internal: %s", u)
	}
	for _, h := range hung {
		t.Errorf("no answer within %s: %s", fuzzCallTimeout, h)
	}
	if strings.Contains(e.d.stderr.String(), "Panic in CRI call") {
		t.Errorf("peapod recovered from a panic:\n%s", tail(e.d.stderr.String(), 5000))
	}
	// Still serving, and still itself.
	if _, err := rt.Version(callCtx(t), &runtime.VersionRequest{}); err != nil {
		t.Fatalf("Version after the fuzzing: %v", err)
	}
	if _, err := rt.ListPodSandbox(callCtx(t), &runtime.ListPodSandboxRequest{}); err != nil {
		t.Fatalf("ListPodSandbox after the fuzzing: %v", err)
	}
}

// fuzzer makes random CRI requests.
type fuzzer struct {
	r     *rand.Rand
	ids   []string // IDs of real objects, prefixes of them, ""
	paths []string // paths safe to hand peapod
}

// fuzzCallTimeout bounds each unary call: peapod must answer every request
// within it, but a stop that waits out a long timeout of the request's.
const fuzzCallTimeout = 20 * time.Second

// call sends one request and returns its answer's code, and whether a
// unary call got no answer within fuzzCallTimeout.
func (f *fuzzer) call(conn *grpc.ClientConn, m protoreflect.MethodDescriptor, req *dynamicpb.Message) (codes.Code, error, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), fuzzCallTimeout)
	defer cancel()
	full := fmt.Sprintf("/%s/%s", m.Parent().FullName(), m.Name())
	if !m.IsStreamingServer() {
		err := conn.Invoke(ctx, full, req, dynamicpb.NewMessage(m.Output()))
		return status.Code(err), err, ctx.Err() != nil
	}
	// Server-streaming calls: read a little, then hang up.
	ctx, cancelStream := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelStream()
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, full)
	if err != nil {
		return status.Code(err), err, false
	}
	if err := s.SendMsg(req); err != nil {
		return status.Code(err), err, false
	}
	_ = s.CloseSend()
	for range 5 {
		if err := s.RecvMsg(dynamicpb.NewMessage(m.Output())); err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.DeadlineExceeded {
				return codes.OK, nil, false
			}
			return status.Code(err), err, false
		}
	}
	return codes.OK, nil, false
}

// waitsOutItsTimeout reports whether req is a StopContainer whose timeout
// leaves less than 5 s of fuzzCallTimeout for the kill that follows it: the
// fuzzed container ignores SIGTERM (its sleep is PID 1), so the stop rightly
// waits the timeout out. No other request has a wait of its caller's.
func waitsOutItsTimeout(m protoreflect.MethodDescriptor, req *dynamicpb.Message) bool {
	if m.Name() != "StopContainer" {
		return false
	}
	timeout := req.Get(m.Input().Fields().ByName("timeout")).Int() // seconds
	return timeout > int64((fuzzCallTimeout-5*time.Second)/time.Second)
}

// fill sets a random subset of msg's fields to random values.
func (f *fuzzer) fill(msg protoreflect.Message, depth int) {
	fields := msg.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if f.r.IntN(4) == 0 { // leave a quarter unset (nil, zero)
			continue
		}
		switch {
		case fd.IsMap():
			mp := msg.Mutable(fd).Map()
			for range f.r.IntN(3) {
				mp.Set(protoreflect.ValueOfString(f.str(fd)).MapKey(), f.scalar(fd.MapValue(), msg, depth))
			}
		case fd.IsList():
			l := msg.Mutable(fd).List()
			for range f.r.IntN(4) {
				if fd.Kind() == protoreflect.MessageKind {
					e := l.NewElement()
					f.fill(e.Message(), depth+1)
					l.Append(e)
				} else {
					l.Append(f.scalar(fd, msg, depth))
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			if depth < 4 {
				f.fill(msg.Mutable(fd).Message(), depth+1)
			}
		default:
			msg.Set(fd, f.scalar(fd, msg, depth))
		}
	}
}

func (f *fuzzer) scalar(fd protoreflect.FieldDescriptor, parent protoreflect.Message, depth int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(f.str(fd))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(f.str(fd)))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(f.r.IntN(2) == 0)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		if f.r.IntN(5) == 0 {
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(f.r.Int32N(100) - 50)) // not a value of the enum
		}
		return protoreflect.ValueOfEnum(vals.Get(f.r.IntN(vals.Len())).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(f.num()))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(f.num())
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(f.num()))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(f.num()))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(f.num()))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(f.num()))
	case protoreflect.MessageKind:
		m := parent.NewField(fd)
		f.fill(m.Message(), depth+1)
		return m
	}
	return fd.Default()
}

func (f *fuzzer) num() int64 {
	switch f.r.IntN(6) {
	case 0:
		return 0
	case 1:
		return -1
	case 2:
		return math.MaxInt64
	case 3:
		return math.MinInt64
	case 4:
		return int64(f.r.IntN(5)) // small: timeouts, attempts
	default:
		return f.r.Int64N(1<<40) - 1<<39
	}
}

// str is a random string for a field, drawn from a pool that fits what the
// field names: IDs, image references, paths, commands; else anything.
func (f *fuzzer) str(fd protoreflect.FieldDescriptor) string {
	name := string(fd.Name())
	switch {
	case strings.HasSuffix(name, "id") || strings.HasSuffix(name, "_id"):
		if f.r.IntN(3) > 0 {
			return f.ids[f.r.IntN(len(f.ids))]
		}
	case name == "image" || name == "image_ref" || name == "user_specified_image":
		pool := []string{busyboxRef, "registry.k8s.io/peapod-fuzz/nonexistent:1", "docker.io/library/busybox:latest",
			"UPPER/Case", ":::", "a@sha256:xyz", strings.Repeat("x", 300), "sha256:" + strings.Repeat("0", 64)}
		return pool[f.r.IntN(len(pool))] // no host off the machine
	case strings.Contains(name, "path") || name == "location" || strings.Contains(name, "directory"):
		if f.r.IntN(3) > 0 {
			return f.paths[f.r.IntN(len(f.paths))]
		}
		return [...]string{"", "relative/x", "../../../../etc/x", "/x\x00nul", strings.Repeat("/a", 2000)}[f.r.IntN(5)]
	case name == "cmd" || name == "command" || name == "args":
		return [...]string{"true", "sh", "-c", "exit 3", "echo", "\x00", "/no/such/binary"}[f.r.IntN(7)]
	case name == "server" || name == "servers" || name == "host_ip" || name == "pod_cidr":
		return [...]string{"127.0.0.1", "::1", "10.250.0.0/24", "not-an-ip", "999.1.1.1", ""}[f.r.IntN(6)]
	}
	switch f.r.IntN(8) {
	case 0:
		return ""
	case 1:
		return strings.Repeat("A", 1<<f.r.IntN(17)) // up to 64 KiB
	case 2:
		return "../" + strings.Repeat("x/", f.r.IntN(10))
	case 3:
		// Odd but valid UTF-8: proto3 strings must be (the client refuses
		// to send anything else).
		return [...]string{"\x00", "\u202e\u0000x", "\ufeff", "日本\n\t\r", "a\x7fb", "%s%n%x"}[f.r.IntN(6)]
	case 4:
		return "ALL"
	default:
		const letters = "abcdefghijklmnopqrstuvwxyz0123456789-_./:"
		b := make([]byte, 1+f.r.IntN(20))
		for i := range b {
			b[i] = letters[f.r.IntN(len(letters))]
		}
		return string(b)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
