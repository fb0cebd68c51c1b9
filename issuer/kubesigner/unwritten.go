package kubesigner

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// Unwritten keeps, per request, what was signed for it while writing its
// status failed (an apiserver error, RBAC that does not let meshca write
// it, an admission policy that refuses it), so that the retry writes the
// same result instead of signing again: one issuance per request however
// long the write keeps failing, not one per retry. An entry belongs to the
// request's UID (a request deleted and created again under its name is
// another request) and lives at most MaxAge, after which the request is
// signed afresh (a certificate held back that long may be refused as
// stale). The zero value is ready to use, with no MaxAge.
type Unwritten[V any] struct {
	// MaxAge bounds how long a result is kept (0: until forgotten).
	MaxAge time.Duration
	// Clock is the clock of MaxAge (nil: the real clock).
	Clock clock.PassiveClock

	mu sync.Mutex
	m  map[types.NamespacedName]unwrittenEntry[V]
}

type unwrittenEntry[V any] struct {
	uid types.UID
	at  time.Time
	v   V
}

func (u *Unwritten[V]) now() time.Time {
	if u.Clock == nil {
		return time.Now()
	}
	return u.Clock.Now()
}

// Keep keeps v, signed for the request key with uid, whose status write
// failed.
// It also drops every entry past MaxAge, so that one whose request is
// never reconciled again (deleted while another replica leads) does not
// stay.
func (u *Unwritten[V]) Keep(key types.NamespacedName, uid types.UID, v V) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[types.NamespacedName]unwrittenEntry[V]{}
	}
	now := u.now()
	if u.MaxAge > 0 {
		for k, e := range u.m {
			if now.Sub(e.at) >= u.MaxAge {
				delete(u.m, k)
			}
		}
	}
	u.m[key] = unwrittenEntry[V]{uid: uid, at: now, v: v}
}

// Reset drops everything kept: a controller's new term (a new Lease
// holder may have settled those requests; they are decided anew).
func (u *Unwritten[V]) Reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.m = nil
}

// Get returns what was kept for the request key with uid, if anything
// younger than MaxAge; an entry of another UID or too old is dropped.
func (u *Unwritten[V]) Get(key types.NamespacedName, uid types.UID) (V, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	e, ok := u.m[key]
	switch {
	case !ok:
		var zero V
		return zero, false
	case e.uid != uid || u.MaxAge > 0 && u.now().Sub(e.at) >= u.MaxAge:
		delete(u.m, key)
		var zero V
		return zero, false
	}
	return e.v, true
}

// Forget drops what was kept for the request key: its status is written,
// or it is finished or gone.
func (u *Unwritten[V]) Forget(key types.NamespacedName) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.m, key)
}

// Len is how many requests have a result kept.
func (u *Unwritten[V]) Len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.m)
}
