package intermediate

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
)

// breakKey replaces the private key of generation gen in the key store
// with another key of the same algorithm: the generation's certificate no
// longer matches its key.
// It runs in the Manager's goroutine, so it reports with t.Error.
func breakKey(t *testing.T, p *parts, gen uint64) {
	gens, err := p.st.ListGenerations(context.Background())
	if err != nil {
		t.Error(err)
		return
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Error(err)
		return
	}
	for _, g := range gens {
		if g.ID == gen {
			if err := os.Remove(g.KeyRef); err != nil {
				t.Error(err)
			}
			if err := keys.WriteKeyFile(g.KeyRef, other); err != nil {
				t.Error(err)
			}
			return
		}
	}
	t.Errorf("no generation %d", gen)
}

// moreRoots is a root source whose Roots() puts another root before the
// wrapped source's: the intermediate's issuing root is not the first one
// (as in a root rotation's [A, B] once the intermediate is under B).
type moreRoots struct {
	root.Source
	first *x509.Certificate
}

func (s *moreRoots) Roots(ctx context.Context) ([]*x509.Certificate, error) {
	rs, err := s.Source.Roots(ctx)
	if s.first == nil {
		return rs, err
	}
	return append([]*x509.Certificate{s.first}, rs...), err
}

// newRoot is another self-signed root.
func newRoot(t *testing.T) *x509.Certificate {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	c, err := root.NewSelfSignedRoot(k, "other root", "meshca", 10*365*24*time.Hour, t0.Add(-time.Hour))
	require.NoError(t, err)
	return c
}
