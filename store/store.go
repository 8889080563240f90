// Package store is the in-memory index peapod keeps of its sandboxes and
// containers, which the kubelet lists and inspects every second: records by
// ID with unique-prefix lookup, name reservations that make concurrent or
// retried creates with one name safe, and a lock per ID that serializes
// lifecycle operations. The records themselves live in containerd; this is
// only their index.
package store

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
)

// Store indexes items of type T.
type Store[T any] struct {
	kind    string                     // what T is, for error messages ("pod sandbox")
	key     func(*T) (id, name string) // an item's ID and reserved name
	compare func(a, b *T) int          // List order

	mu       sync.RWMutex
	byID     map[string]*T
	reserved map[string]string // name → ID
	locks    Locks             // lifecycle locks
}

// New returns an empty Store.
func New[T any](kind string, key func(*T) (id, name string), compare func(a, b *T) int) *Store[T] {
	return &Store[T]{kind: kind, key: key, compare: compare, byID: map[string]*T{}, reserved: map[string]string{}}
}

// Reserve claims name for id; it fails with AlreadyExists if another ID
// holds the name.
func (s *Store[T]) Reserve(name, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.reserved[name]; ok && cur != id {
		return fmt.Errorf("%s name %q is reserved for %s: %w", s.kind, name, cur, errdefs.ErrAlreadyExists)
	}
	s.reserved[name] = id
	return nil
}

// Release gives up id's reservation of name, after a failed create.
func (s *Store[T]) Release(name, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reserved[name] == id {
		delete(s.reserved, name)
	}
}

// Add indexes item and reserves its name.
func (s *Store[T]) Add(item *T) {
	id, name := s.key(item)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byID[id] = item
	s.reserved[name] = id
}

// Delete forgets the item with id and frees its name.
func (s *Store[T]) Delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if item, ok := s.byID[id]; ok {
		delete(s.byID, id)
		if _, name := s.key(item); s.reserved[name] == id {
			delete(s.reserved, name)
		}
	}
}

// Update applies fn to the item with id under the store's lock and returns
// a copy of the result.
func (s *Store[T]) Update(id string, fn func(*T)) (T, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	item, ok := s.byID[id]
	if !ok {
		var zero T
		return zero, false
	}
	fn(item)
	return *item, true
}

// Get returns a copy of the item with the given ID or unique ID prefix.
func (s *Store[T]) Get(idOrPrefix string) (T, error) {
	var zero T
	if idOrPrefix == "" {
		return zero, fmt.Errorf("no %s ID given: %w", s.kind, errdefs.ErrInvalidArgument)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if item, ok := s.byID[idOrPrefix]; ok {
		return *item, nil
	}
	var found *T
	for id, item := range s.byID {
		if strings.HasPrefix(id, idOrPrefix) {
			if found != nil {
				return zero, fmt.Errorf("%s ID prefix %q is ambiguous: %w", s.kind, idOrPrefix, errdefs.ErrInvalidArgument)
			}
			found = item
		}
	}
	if found == nil {
		return zero, fmt.Errorf("%s %q: %w", s.kind, idOrPrefix, errdefs.ErrNotFound)
	}
	return *found, nil
}

// GetLocked returns a copy of the item with the given ID or unique ID
// prefix, with its lock held, read again once the lock is held (a holder
// before us may have changed or deleted it), and the function that
// releases the lock.
func (s *Store[T]) GetLocked(idOrPrefix string) (T, func(), error) {
	var zero T
	item, err := s.Get(idOrPrefix)
	if err != nil {
		return zero, nil, err
	}
	id, _ := s.key(&item)
	unlock := s.Lock(id)
	if item, err = s.Get(id); err != nil {
		unlock()
		return zero, nil, err
	}
	return item, unlock, nil
}

// List returns copies of all items, in the store's order. It sorts the
// items' pointers, under the read lock, and copies each item once: sorting
// the copies instead would hand compare the addresses of a copy of each
// side of every comparison, which escape to the heap, some thousand
// allocations of a whole item for a list of a few hundred.
func (s *Store[T]) List() []T {
	s.mu.RLock()
	defer s.mu.RUnlock()
	items := make([]*T, 0, len(s.byID))
	for _, item := range s.byID {
		items = append(items, item)
	}
	slices.SortFunc(items, s.compare)
	out := make([]T, len(items))
	for i, item := range items {
		out[i] = *item
	}
	return out
}

// Lock serializes lifecycle operations on one ID; call the result (once) to
// unlock. Deleting the item while its lock is held does not hand a later
// caller a second lock for the same ID (see Locks).
func (s *Store[T]) Lock(id string) func() { return s.locks.Lock(id) }

// Locks is a set of mutexes by key, each existing while anyone holds or
// waits for it: the map does not grow with every key ever locked, and a
// key's lock is never replaced while held. The zero value is ready to use.
type Locks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

// Lock locks key's mutex; call the result (once) to unlock it.
func (l *Locks) Lock(key string) func() {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*keyLock{}
	}
	k := l.locks[key]
	if k == nil {
		k = &keyLock{}
		l.locks[key] = k
	}
	k.refs++
	l.mu.Unlock()
	k.mu.Lock()
	var once sync.Once
	return func() {
		once.Do(func() {
			k.mu.Unlock()
			l.mu.Lock()
			if k.refs--; k.refs == 0 {
				delete(l.locks, key)
			}
			l.mu.Unlock()
		})
	}
}

// held is how many keys have a mutex (held or waited for), for tests.
func (l *Locks) held() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.locks)
}
