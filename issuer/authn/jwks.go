package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"go.step.sm/crypto/jose"
	"golang.org/x/sync/singleflight"
)

// maxJWKSSize bounds a JWKS document.
const maxJWKSSize = 1 << 20

// keySet holds an issuer's verification keys, loaded on demand and
// refreshed when stale or when a token names an unknown kid. Loads are rate
// limited, so a flood of tokens with made-up kids cannot hammer the issuer.
// There is no background loop: every load is started by a request, on the
// injected clock.
//
// A load runs detached from the request that started it (its own timeout,
// not the caller's cancellation), and concurrent callers share it. A
// caller whose context ends stops waiting, but the load goes on and its
// result counts: a token with the issuer's public iss and a cancelled
// context cannot make a load fail and so burn the MinRefreshInterval slot.
type keySet struct {
	load       func(ctx context.Context) ([]byte, error)
	source     string
	refresh    time.Duration // reload after this age
	minRefresh time.Duration // never load more often than this
	timeout    time.Duration // bounds one load

	flight singleflight.Group // one load at a time, shared by its callers

	mu          sync.RWMutex
	keys        []jose.JSONWebKey // public keys only
	loadedAt    time.Time         // last successful load
	lastAttempt time.Time         // last load, successful or not
	lastErr     error
}

// keysFor returns the keys that may have signed a token with kid (all keys
// when kid is empty). It loads the set when it was never loaded or is
// stale, and once more when kid is unknown. It fails only when no keys were
// ever loaded (the error then wraps ErrUnavailable).
func (s *keySet) keysFor(ctx context.Context, kid string, now time.Time) ([]jose.JSONWebKey, error) {
	s.mu.RLock()
	loaded, stale := !s.loadedAt.IsZero(), now.Sub(s.loadedAt) >= s.refresh
	s.mu.RUnlock()
	if !loaded || stale {
		s.reload(ctx, now)
	}
	keys, err := s.match(kid)
	if err == nil && len(keys) == 0 && kid != "" {
		if s.reload(ctx, now) {
			keys, err = s.match(kid)
		}
	}
	return keys, err
}

func (s *keySet) match(kid string) ([]jose.JSONWebKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.loadedAt.IsZero() {
		return nil, fmt.Errorf("%w: no keys from %s: %v", ErrUnavailable, s.source, s.lastErr)
	}
	if kid == "" {
		return s.keys, nil
	}
	var keys []jose.JSONWebKey
	for _, k := range s.keys {
		if k.KeyID == kid {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// reload loads the set unless a load was attempted less than minRefresh
// ago, or joins the load in progress. It reports whether the load
// succeeded; it returns false at once when ctx ends first. On failure the
// old keys stay in use.
func (s *keySet) reload(ctx context.Context, now time.Time) bool {
	// The load must not inherit ctx's cancellation (the caller may be gone
	// before it ends), only its values; it has its own timeout.
	detached := context.WithoutCancel(ctx)
	ch := s.flight.DoChan("load", func() (ok any, _ error) {
		// singleflight re-panics a panic of this function in a new
		// goroutine, which no interceptor recovers: make it a failed load.
		defer func() {
			if r := recover(); r != nil {
				f := panicFailure(JWT, r)
				s.mu.Lock()
				s.lastAttempt, s.lastErr = now, f
				s.mu.Unlock()
				ok = false
			}
		}()
		s.mu.RLock()
		tooSoon := !s.lastAttempt.IsZero() && now.Sub(s.lastAttempt) < s.minRefresh
		s.mu.RUnlock()
		if tooSoon {
			return false, nil
		}
		lctx, cancel := context.WithTimeout(detached, s.timeout)
		defer cancel()
		b, err := s.load(lctx)
		var keys []jose.JSONWebKey
		if err == nil {
			keys, err = parseJWKS(b)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.lastAttempt = now
		s.lastErr = err
		if err != nil {
			return false, nil
		}
		s.keys, s.loadedAt = keys, now
		return true, nil
	})
	select {
	case r := <-ch:
		return r.Val.(bool)
	case <-ctx.Done():
		return false
	}
}

// parseJWKS parses a JWK Set and keeps its public signing keys. A key that
// does not parse or is symmetric is skipped, so that one odd key does not
// break the others; a set with no usable key is an error.
func parseJWKS(b []byte) ([]jose.JSONWebKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parsing JWKS: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil || !k.Valid() || jose.IsSymmetric(&k) {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub := k.Public()
		if !pub.Valid() {
			continue
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 {
		return nil, errors.New("the JWKS holds no usable public signing key")
	}
	return keys, nil
}

// fileLoader reads a JWKS file.
func fileLoader(path string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readBounded(f, path)
	}
}

// urlLoader fetches a JWKS over HTTPS (HTTP only to loopback).
func urlLoader(client *http.Client, raw string) (func(context.Context) ([]byte, error), error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("authn: JWKS URL: %w", err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return nil, fmt.Errorf("authn: JWKS URL %q must be https (http only for loopback)", raw)
	}
	return func(ctx context.Context) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json, application/jwk-set+json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", raw, resp.Status)
		}
		return readBounded(resp.Body, "GET "+raw)
	}, nil
}

// readBounded reads a JWKS of at most maxJWKSSize bytes; a larger one is
// an error, never silently truncated.
func readBounded(r io.Reader, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxJWKSSize+1))
	if err == nil && len(b) > maxJWKSSize {
		return nil, fmt.Errorf("%s: JWKS larger than %d bytes", what, maxJWKSSize)
	}
	return b, err
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
