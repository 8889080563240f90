package store

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

type item struct {
	id, name string
	at       time.Time
	state    string
}

func newTestStore(items ...*item) *Store[item] {
	s := New("thing",
		func(i *item) (string, string) { return i.id, i.name },
		func(a, b *item) int { return a.at.Compare(b.at) })
	for _, i := range items {
		s.Add(i)
	}
	return s
}

func TestGet(t *testing.T) {
	now := time.Now()
	s := newTestStore(
		&item{id: "abc123", name: "a", at: now},
		&item{id: "abd456", name: "b", at: now.Add(time.Second)},
	)
	for _, tc := range []struct {
		query   string
		wantID  string
		wantErr error
	}{
		{"abc123", "abc123", nil},
		{"abc", "abc123", nil},
		{"abd", "abd456", nil},
		{"ab", "", errdefs.ErrInvalidArgument}, // ambiguous
		{"", "", errdefs.ErrInvalidArgument},
		{"zzz", "", errdefs.ErrNotFound},
	} {
		got, err := s.Get(tc.query)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("Get(%q) = %v, want %v", tc.query, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.id != tc.wantID {
			t.Errorf("Get(%q) = %q, %v; want %q", tc.query, got.id, err, tc.wantID)
		}
	}
}

func TestReservations(t *testing.T) {
	s := newTestStore(&item{id: "1", name: "web"})
	if err := s.Reserve("web", "2"); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Reserve of a taken name = %v, want AlreadyExists", err)
	}
	if err := s.Reserve("web", "1"); err != nil {
		t.Fatalf("Reserve by the holder = %v", err)
	}
	if err := s.Reserve("db", "3"); err != nil {
		t.Fatal(err)
	}
	s.Release("db", "4") // not the holder: no effect
	if err := s.Reserve("db", "5"); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("name released by a non-holder: %v", err)
	}
	s.Release("db", "3")
	if err := s.Reserve("db", "5"); err != nil {
		t.Fatalf("Reserve after Release = %v", err)
	}
	s.Delete("1")
	if err := s.Reserve("web", "6"); err != nil {
		t.Fatalf("Reserve after Delete = %v", err)
	}
	if _, err := s.Get("1"); !errdefs.IsNotFound(err) {
		t.Fatalf("Get after Delete = %v", err)
	}
}

func TestUpdateAndList(t *testing.T) {
	now := time.Now()
	s := newTestStore(&item{id: "late", at: now.Add(time.Minute)}, &item{id: "early", at: now})
	got, ok := s.Update("late", func(i *item) { i.state = "done" })
	if !ok || got.state != "done" {
		t.Fatalf("Update = %+v, %v", got, ok)
	}
	if _, ok := s.Update("missing", func(*item) {}); ok {
		t.Fatal("Update of a missing item reported ok")
	}
	list := s.List()
	if len(list) != 2 || list[0].id != "early" || list[1].state != "done" {
		t.Fatalf("List = %+v", list)
	}
	list[0].state = "changed" // copies: the store is not affected
	if again, _ := s.Get("early"); again.state != "" {
		t.Fatal("List returned shared items")
	}
}

func TestLockSerializes(t *testing.T) {
	s := newTestStore()
	unlock := s.Lock("x")
	done := make(chan struct{})
	go func() { s.Lock("x")(); close(done) }()
	select {
	case <-done:
		t.Fatal("second Lock did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	<-done
}

// Deleting or releasing an ID while its lock is held must not hand a later
// Lock of that ID a second, free lock.
func TestLockOutlivesDelete(t *testing.T) {
	for _, forget := range []struct {
		name string
		fn   func(s *Store[item])
	}{
		{"Delete", func(s *Store[item]) { s.Delete("x") }},
		{"Release", func(s *Store[item]) { s.Release("name-x", "x") }},
	} {
		t.Run(forget.name, func(t *testing.T) {
			s := newTestStore(&item{id: "x"})
			unlock := s.Lock("x")
			forget.fn(s)
			done := make(chan struct{})
			go func() { s.Lock("x")(); close(done) }()
			select {
			case <-done:
				t.Fatal("Lock after " + forget.name + " did not wait for the holder")
			case <-time.After(50 * time.Millisecond):
			}
			unlock()
			<-done
			if n := s.locks.held(); n != 0 {
				t.Errorf("%d locks kept after every holder unlocked", n)
			}
		})
	}
}

// GetLocked reads the item again once the lock is held: what the holder
// before it did (here, deleting the item) is what it sees.
func TestGetLockedSeesTheHolderBefore(t *testing.T) {
	s := newTestStore(&item{id: "x"})
	_, unlock, err := s.GetLocked("x")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, unlock2, err := s.GetLocked("x")
		if err == nil {
			unlock2()
		}
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	s.Delete("x")
	unlock()
	if err := <-got; !errdefs.IsNotFound(err) {
		t.Errorf("GetLocked after the holder deleted the item = %v, want NotFound", err)
	}
}

// BenchmarkList lists a store of 200 items, as the kubelet lists the
// containers of 100 pods of two each, every second.
func BenchmarkList(b *testing.B) {
	s := newTestStore()
	now := time.Now()
	for i := range 200 {
		s.Add(&item{id: fmt.Sprint(i), name: fmt.Sprint("name-", i), at: now.Add(time.Duration(i*7919%200) * time.Millisecond)})
	}
	b.ReportAllocs()
	for b.Loop() {
		if got := s.List(); len(got) != 200 {
			b.Fatalf("List returned %d items", len(got))
		}
	}
}
