package crl

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/root"
)

// maxRootCRLBytes bounds what a root CRL file or URL may hold.
const maxRootCRLBytes = 16 << 20

// FileRootCRL is the root's CRL read from a file or fetched from a URL
// (crl.rootCRL) for a file root whose key meshca does not hold. Each read
// must parse and pass root.CheckRootCRL (issued and signed by the root, a
// complete CRL with a nextUpdate, not dated ahead of the clock); a CRL
// that the verdict does not take (a lower CRLNumber than the one held, one
// issued before it, one not valid now while the one held of the same
// number is) is not taken, and a failed read keeps the last good CRL.
// With a Memory, the CRL held is also the one kept in the store when that
// one is newer (taken before a restart, or by another replica), and each
// CRL taken is kept there.
type FileRootCRL struct {
	// File or URL is the source; exactly one is set.
	File, URL string
	// Root is the root certificate that issues the CRL.
	Root    *x509.Certificate
	Refresh time.Duration
	Client  *http.Client
	Clock   clock.WithTicker
	Log     *slog.Logger
	// Memory keeps the CRL taken in the store (nil: in memory only).
	Memory *root.CRLMemory

	crl atomic.Pointer[x509.RevocationList]
}

// CurrentCRL implements RootCRLSource.
func (s *FileRootCRL) CurrentCRL() *x509.RevocationList { return s.crl.Load() }

// Load reads the CRL once. The CRL kept in the store, when newer than the
// one held, is held first, as before a restart (expired or not), so that
// it is published even when the read fails.
func (s *FileRootCRL) Load(ctx context.Context) error {
	now := s.clock().Now()
	cur := s.crl.Load()
	if k, err := s.Memory.Recall(ctx, s.Root, cur, now); err != nil {
		s.log().Warn("cannot read the root CRL kept in the store; comparing with the one held in memory only", "error", err)
	} else if k != nil {
		s.crl.Store(k)
		cur = k
	}
	b, err := s.read(ctx)
	if err != nil {
		return err
	}
	c, err := parseRootCRL(b)
	if err != nil {
		return fmt.Errorf("crl.rootCRL %s: %w", s.where(), err)
	}
	v, err := root.CheckRootCRL(c, cur, s.Root, now)
	if err != nil {
		return fmt.Errorf("crl.rootCRL %s: the CRL %w", s.where(), err)
	}
	switch v {
	case root.KeepOlderNumber:
		return fmt.Errorf("crl.rootCRL %s: CRL number %s is lower than the %s held; keeping the newer one", s.where(), c.Number, cur.Number)
	case root.KeepIssuedBefore:
		return fmt.Errorf("crl.rootCRL %s: the CRL (number %s) was issued at %s, before the one held (number %s, %s): a replayed copy; keeping the one held", s.where(),
			c.Number, c.ThisUpdate.UTC().Format(time.RFC3339), cur.Number, cur.ThisUpdate.UTC().Format(time.RFC3339))
	case root.KeepFresher:
		return fmt.Errorf("crl.rootCRL %s: the CRL (valid from %s to %s) is not valid now and the one held is; keeping the one held", s.where(),
			c.ThisUpdate.UTC().Format(time.RFC3339), c.NextUpdate.UTC().Format(time.RFC3339))
	case root.TakeStaleCRL:
		s.log().Warn("the root CRL is past its nextUpdate (and lists more than the one held, or none usable is held); relying parties may refuse it: have the root's CA issue a new CRL", "source", s.where(), "next_update", c.NextUpdate)
	case root.TakeRenumbered:
		s.log().Warn("the root CRL has a lower CRL number than the one held, which has expired: the root's CA numbering went back (RFC 5280 section 5.2.3 requires increasing numbers); taking it, as it is valid now",
			"source", s.where(), "number", c.Number, "held", cur.Number)
	}
	if !v.Takes() { // a verdict added without a case above
		return fmt.Errorf("crl.rootCRL %s: the CRL is not taken (verdict %d)", s.where(), v)
	}
	if k, err := s.Memory.Keep(ctx, s.Root, c, cur, v, now); err != nil {
		s.log().Warn("the root CRL is taken but not kept in the store: a restart compares the next one with the CRL kept before it", "error", err)
	} else {
		c = k
	}
	s.crl.Store(c)
	return nil
}

func (s *FileRootCRL) clock() clock.WithTicker {
	if s.Clock == nil {
		return clock.RealClock{}
	}
	return s.Clock
}

func (s *FileRootCRL) log() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}

func (s *FileRootCRL) where() string {
	if s.File != "" {
		return s.File
	}
	return s.URL
}

func (s *FileRootCRL) read(ctx context.Context) ([]byte, error) {
	if s.File != "" {
		f, err := os.Open(s.File)
		if err != nil {
			return nil, fmt.Errorf("crl.rootCRL.file: %w", err)
		}
		defer f.Close()
		return readLimited(f, "crl.rootCRL.file "+s.File)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("crl.rootCRL.url: %w", err)
	}
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("crl.rootCRL.url: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("crl.rootCRL.url %s answered %s", s.URL, resp.Status)
	}
	return readLimited(resp.Body, "crl.rootCRL.url "+s.URL)
}

func readLimited(r io.Reader, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxRootCRLBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(b) > maxRootCRLBytes {
		return nil, fmt.Errorf("%s is over %d bytes", what, maxRootCRLBytes)
	}
	return b, nil
}

// parseRootCRL parses one CRL, PEM or DER.
func parseRootCRL(b []byte) (*x509.RevocationList, error) {
	der := b
	if block, _ := pem.Decode(b); block != nil {
		if block.Type != pemTypeCRL {
			return nil, fmt.Errorf("holds a %q PEM block, not an X509 CRL", block.Type)
		}
		der = block.Bytes
	}
	c, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("does not parse as a CRL: %w", err)
	}
	return c, nil
}

// Run re-reads the CRL every Refresh until ctx ends; failures keep the
// last good CRL and are logged.
func (s *FileRootCRL) Run(ctx context.Context) {
	log := s.log()
	t := s.clock().NewTicker(s.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			if err := s.Load(ctx); err != nil {
				log.Warn("reading the root CRL failed; keeping the last good one", "error", err)
			}
		}
	}
}
