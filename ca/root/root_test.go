package root_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/root"
)

var now = time.Date(2026, time.May, 1, 12, 0, 0, 0, time.UTC)

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

// ca is a throwaway certificate with its key.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newRoot(t *testing.T, name string, life time.Duration) ca {
	t.Helper()
	k := newKey(t)
	c, err := root.NewSelfSignedRoot(k, name, "meshca-test", life, now)
	require.NoError(t, err)
	return ca{c, k}
}

func mint(t *testing.T, parent ca, life time.Duration) ca {
	t.Helper()
	k := newKey(t)
	c, err := root.MintIntermediate(parent.cert, parent.key, k.Public(), root.IntermediateTemplate{
		CommonName: "meshca intermediate", Organization: "meshca", Lifetime: life,
	}, now)
	require.NoError(t, err)
	return ca{c, k}
}

// issue signs an arbitrary template under parent (for shapes MintIntermediate
// never produces).
func issue(t *testing.T, parent ca, tmpl *x509.Certificate) ca {
	t.Helper()
	k := newKey(t)
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.cert, k.Public(), parent.key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return ca{c, k}
}

func TestNewSelfSignedRoot_IsASelfSignedCA(t *testing.T) {
	r := newRoot(t, "test root", 10*365*24*time.Hour)
	c := r.cert
	require.NoError(t, c.CheckSignatureFrom(c))
	require.True(t, c.BasicConstraintsValid)
	require.True(t, c.IsCA)
	require.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, c.KeyUsage)
	require.Equal(t, "test root", c.Subject.CommonName)
	require.Equal(t, []string{"meshca-test"}, c.Subject.Organization)
	require.Equal(t, now.Add(-policy.Backdate), c.NotBefore.UTC())
	require.Equal(t, now.Add(10*365*24*time.Hour), c.NotAfter.UTC())
	require.NoError(t, root.CheckSigningCA(c))
}

func TestMintIntermediate_PathLenZeroCertAndCRLSignOnly(t *testing.T) {
	r := newRoot(t, "root", 10*365*24*time.Hour)
	in := mint(t, r, 365*24*time.Hour)
	c := in.cert
	require.NoError(t, c.CheckSignatureFrom(r.cert))
	require.True(t, c.BasicConstraintsValid)
	require.True(t, c.IsCA)
	require.Equal(t, 0, c.MaxPathLen)
	require.True(t, c.MaxPathLenZero, "pathlen:0 must be encoded, not left unlimited")
	require.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, c.KeyUsage)
	require.Empty(t, c.ExtKeyUsage)
	require.Equal(t, "meshca intermediate", c.Subject.CommonName)
	require.Equal(t, []string{"meshca"}, c.Subject.Organization)
	require.Equal(t, now.Add(-policy.Backdate), c.NotBefore.UTC())
	require.Equal(t, now.Add(365*24*time.Hour), c.NotAfter.UTC())
	require.Equal(t, 1, c.SerialNumber.Sign())
	require.LessOrEqual(t, c.SerialNumber.BitLen(), 128)
	require.True(t, in.key.PublicKey.Equal(c.PublicKey))

	// pathlen:0 really stops a further CA below it: a leaf of a sub-CA does
	// not verify, a leaf of the intermediate does.
	opts := func(inters ...*x509.Certificate) x509.VerifyOptions {
		o := x509.VerifyOptions{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
		o.Roots.AddCert(r.cert)
		for _, c := range inters {
			o.Intermediates.AddCert(c)
		}
		return o
	}
	leaf := issue(t, in, &x509.Certificate{Subject: pkix.Name{CommonName: "leaf"}})
	_, err := leaf.cert.Verify(opts(in.cert))
	require.NoError(t, err)
	sub := issue(t, in, &x509.Certificate{Subject: pkix.Name{CommonName: "sub"}, BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign})
	subLeaf := issue(t, sub, &x509.Certificate{Subject: pkix.Name{CommonName: "leaf of sub"}})
	_, err = subLeaf.cert.Verify(opts(in.cert, sub.cert))
	require.Error(t, err)
}

func TestMintIntermediate_NeverOutlivesTheRoot(t *testing.T) {
	r := newRoot(t, "root", 30*24*time.Hour)
	in := mint(t, r, 365*24*time.Hour)
	require.Equal(t, r.cert.NotAfter, in.cert.NotAfter)
}

func TestMintIntermediate_NeverStartsBeforeTheRoot(t *testing.T) {
	k := newKey(t)
	// A root created 30 s ago: backdating the intermediate 2 min would predate it.
	young, err := root.NewSelfSignedRoot(k, "young", "o", time.Hour, now.Add(-30*time.Second+policy.Backdate))
	require.NoError(t, err)
	in := mint(t, ca{young, k}, time.Hour)
	require.Equal(t, young.NotBefore, in.cert.NotBefore)
}

func TestMintIntermediate_RefusesAnExpiredRoot(t *testing.T) {
	k := newKey(t)
	old, err := root.NewSelfSignedRoot(k, "old", "o", time.Hour, now.Add(-2*time.Hour))
	require.NoError(t, err)
	_, err = root.MintIntermediate(old, k, newKey(t).Public(), root.IntermediateTemplate{Lifetime: time.Hour}, now)
	require.ErrorContains(t, err, "root expired at")
}

func TestCheckSigningCA(t *testing.T) {
	r := newRoot(t, "root", 24*time.Hour)
	tests := map[string]struct {
		tmpl *x509.Certificate
		want string
	}{
		"leaf": {&x509.Certificate{KeyUsage: x509.KeyUsageDigitalSignature}, "is not a CA certificate"},
		"CA without certSign": {
			&x509.Certificate{BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCRLSign}, "lacks the keyCertSign key usage",
		},
		"CA without cRLSign": {
			&x509.Certificate{BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign}, "lacks the cRLSign key usage",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			require.ErrorContains(t, root.CheckSigningCA(issue(t, r, tc.tmpl).cert), tc.want)
		})
	}
	require.NoError(t, root.CheckSigningCA(mint(t, r, time.Hour).cert))
}

func TestCheckValidAt(t *testing.T) {
	c := &x509.Certificate{NotBefore: now, NotAfter: now.Add(time.Hour)}
	require.NoError(t, root.CheckValidAt(c, now))
	require.NoError(t, root.CheckValidAt(c, now.Add(time.Hour)))
	require.EqualError(t, root.CheckValidAt(c, now.Add(time.Hour+time.Second)), "expired at 2026-05-01T13:00:00Z")
	require.EqualError(t, root.CheckValidAt(c, now.Add(-time.Second)), "is not valid before 2026-05-01T12:00:00Z")
}

func TestCheckKeyMatches(t *testing.T) {
	r := newRoot(t, "root", time.Hour)
	require.NoError(t, root.CheckKeyMatches(r.cert, r.key))
	require.EqualError(t, root.CheckKeyMatches(r.cert, newKey(t)), "the private key does not match the certificate's public key")
}

func TestParseCertificates(t *testing.T) {
	a, b := newRoot(t, "a", time.Hour), newRoot(t, "b", time.Hour)
	certs, err := root.ParseCertificates(root.EncodePEM(a.cert, b.cert))
	require.NoError(t, err)
	require.Len(t, certs, 2)
	require.True(t, certs[0].Equal(a.cert))
	require.True(t, certs[1].Equal(b.cert))

	bad := map[string]struct {
		in   string
		want string
	}{
		"empty":            {"", "contains no certificate"},
		"whitespace":       {"\n \n", "contains no certificate"},
		"garbage":          {"garbage", "contains data that is not PEM"},
		"trailing garbage": {string(root.EncodePEM(a.cert)) + "garbage\n", "contains data that is not PEM"},
		"a key block":      {"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", `contains a "PRIVATE KEY" block`},
		"bad DER":          {"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate 1 does not parse"},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := root.ParseCertificates([]byte(tc.in))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestSplitChainAndBundleChain(t *testing.T) {
	r := newRoot(t, "root", 24*time.Hour)
	mid := issue(t, r, &x509.Certificate{Subject: pkix.Name{CommonName: "mid"}, BasicConstraintsValid: true, IsCA: true, MaxPathLen: 1, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign})
	leafCA := mint(t, mid, time.Hour)

	inters, roots := root.SplitChain([]*x509.Certificate{leafCA.cert, mid.cert, r.cert})
	require.Equal(t, []*x509.Certificate{leafCA.cert, mid.cert}, inters)
	require.Equal(t, []*x509.Certificate{r.cert}, roots)

	other := newRoot(t, "other", 24*time.Hour)
	b := &root.Bundle{Cert: leafCA.cert, Intermediates: []*x509.Certificate{mid.cert}, Roots: []*x509.Certificate{other.cert, r.cert}}
	require.NoError(t, b.Verify(now))
	require.Equal(t, []*x509.Certificate{leafCA.cert, mid.cert, r.cert}, b.Chain(), "the chain ends with the root it chains to")

	orphan := &root.Bundle{Cert: leafCA.cert, Intermediates: []*x509.Certificate{mid.cert}, Roots: []*x509.Certificate{other.cert}}
	require.Error(t, orphan.Verify(now))
	require.Equal(t, []*x509.Certificate{leafCA.cert, mid.cert}, orphan.Chain())
}

func TestReadCertificates_NamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pem")
	_, err := root.ReadCertificates(path)
	require.ErrorContains(t, err, path+": ")
	require.ErrorIs(t, err, os.ErrNotExist)

	require.NoError(t, os.WriteFile(path, []byte("nope"), 0o644))
	_, err = root.ReadCertificates(path)
	require.EqualError(t, err, path+": contains data that is not PEM")
}

// cacertsDir writes Istio's four files for a root → intermediate pair and
// returns the directory and a loadKey that goes through keys.Manager.Signer.
type cacertsFixture struct {
	dir     string
	root    ca
	inter   ca
	loadKey func(string) (crypto.Signer, error)
}

func (f cacertsFixture) path(name string) string { return filepath.Join(f.dir, name) }

func (f cacertsFixture) write(t *testing.T, name string, b []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(f.path(name), b, 0o644))
}

func (f cacertsFixture) writeKey(t *testing.T, k crypto.PrivateKey) {
	t.Helper()
	require.NoError(t, os.Remove(f.path(root.CAKeyFile)))
	require.NoError(t, keys.WriteKeyFile(f.path(root.CAKeyFile), k))
}

func newCACerts(t *testing.T) cacertsFixture {
	t.Helper()
	r := newRoot(t, "root", 10*365*24*time.Hour)
	in := mint(t, r, 365*24*time.Hour)
	km, err := keys.Open(context.Background(), keys.Config{Type: "softkms", Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = km.Close() })
	f := cacertsFixture{dir: t.TempDir(), root: r, inter: in, loadKey: km.Signer}
	f.write(t, root.CACertFile, root.EncodePEM(in.cert))
	require.NoError(t, keys.WriteKeyFile(f.path(root.CAKeyFile), in.key))
	f.write(t, root.CertChainFile, root.EncodePEM(in.cert, r.cert))
	f.write(t, root.RootCertFile, root.EncodePEM(r.cert))
	return f
}

func TestLoadCACertsDir_LoadsIstiosFourFiles(t *testing.T) {
	f := newCACerts(t)
	b, signer, err := root.LoadCACertsDir(f.dir, f.loadKey, now)
	require.NoError(t, err)
	require.True(t, b.Cert.Equal(f.inter.cert))
	require.Empty(t, b.Intermediates)
	require.Len(t, b.Roots, 1)
	require.True(t, b.Roots[0].Equal(f.root.cert))
	require.True(t, f.inter.key.PublicKey.Equal(signer.Public()))
	require.Equal(t, []*x509.Certificate{b.Cert, b.Roots[0]}, b.Chain())
}

func TestLoadCACertsDir_AcceptsSeveralRootsDuringRotation(t *testing.T) {
	f := newCACerts(t)
	next := newRoot(t, "next root", 10*365*24*time.Hour)
	f.write(t, root.RootCertFile, root.EncodePEM(next.cert, f.root.cert))
	b, _, err := root.LoadCACertsDir(f.dir, f.loadKey, now)
	require.NoError(t, err)
	require.Len(t, b.Roots, 2)
	require.True(t, b.Chain()[1].Equal(f.root.cert))
}

func TestLoadCACertsDir_ErrorsNameTheFileAndTheProblem(t *testing.T) {
	tests := map[string]struct {
		mutate func(t *testing.T, f cacertsFixture)
		file   string
		want   string
	}{
		"ca-cert is not a CA": {
			mutate: func(t *testing.T, f cacertsFixture) {
				leaf := issue(t, f.inter, &x509.Certificate{KeyUsage: x509.KeyUsageDigitalSignature})
				f.write(t, root.CACertFile, root.EncodePEM(leaf.cert))
			},
			file: root.CACertFile, want: "is not a CA certificate",
		},
		"ca-cert lacks cRLSign": {
			mutate: func(t *testing.T, f cacertsFixture) {
				in := issue(t, f.root, &x509.Certificate{Subject: pkix.Name{CommonName: "no crl"}, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign})
				f.write(t, root.CACertFile, root.EncodePEM(in.cert))
				f.writeKey(t, in.key)
				f.write(t, root.CertChainFile, root.EncodePEM(in.cert, f.root.cert))
			},
			file: root.CACertFile, want: "lacks the cRLSign key usage",
		},
		"ca-cert holds two certificates": {
			mutate: func(t *testing.T, f cacertsFixture) {
				f.write(t, root.CACertFile, root.EncodePEM(f.inter.cert, f.root.cert))
			},
			file: root.CACertFile, want: "holds 2 certificates",
		},
		"ca-cert expired": {
			mutate: func(t *testing.T, f cacertsFixture) {
				in := issue(t, f.root, &x509.Certificate{
					Subject: pkix.Name{CommonName: "expired"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour),
					BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
				})
				f.write(t, root.CACertFile, root.EncodePEM(in.cert))
			},
			file: root.CACertFile, want: "expired at",
		},
		"ca-cert is PEM garbage": {
			mutate: func(t *testing.T, f cacertsFixture) { f.write(t, root.CACertFile, []byte("not a certificate\n")) },
			file:   root.CACertFile, want: "contains data that is not PEM",
		},
		"ca-key belongs to another certificate": {
			mutate: func(t *testing.T, f cacertsFixture) { f.writeKey(t, f.root.key) },
			file:   root.CAKeyFile, want: "the private key does not match the certificate's public key",
		},
		"ca-key is world-readable": {
			mutate: func(t *testing.T, f cacertsFixture) { require.NoError(t, os.Chmod(f.path(root.CAKeyFile), 0o644)) },
			file:   root.CAKeyFile, want: "chmod 600",
		},
		"ca-key is missing": {
			mutate: func(t *testing.T, f cacertsFixture) { require.NoError(t, os.Remove(f.path(root.CAKeyFile))) },
			file:   root.CAKeyFile, want: "does not exist",
		},
		"cert-chain does not start with ca-cert": {
			mutate: func(t *testing.T, f cacertsFixture) {
				f.write(t, root.CertChainFile, root.EncodePEM(f.root.cert, f.inter.cert))
			},
			file: root.CertChainFile, want: "must start with the certificate in ca-cert.pem",
		},
		"cert-chain is PEM garbage": {
			mutate: func(t *testing.T, f cacertsFixture) { f.write(t, root.CertChainFile, []byte("garbage")) },
			file:   root.CertChainFile, want: "contains data that is not PEM",
		},
		"cert-chain is missing": {
			mutate: func(t *testing.T, f cacertsFixture) { require.NoError(t, os.Remove(f.path(root.CertChainFile))) },
			file:   root.CertChainFile, want: "no such file or directory",
		},
		"chain does not verify to root-cert": {
			mutate: func(t *testing.T, f cacertsFixture) {
				f.write(t, root.RootCertFile, root.EncodePEM(newRoot(t, "stranger", time.Hour).cert))
			},
			file: root.RootCertFile, want: "does not verify to",
		},
		"root-cert holds a non-root": {
			mutate: func(t *testing.T, f cacertsFixture) {
				f.write(t, root.RootCertFile, root.EncodePEM(f.root.cert, f.inter.cert))
			},
			file: root.RootCertFile, want: "certificate 2 (CN=meshca intermediate,O=meshca) is not a self-signed CA",
		},
		"root-cert is PEM garbage": {
			mutate: func(t *testing.T, f cacertsFixture) {
				f.write(t, root.RootCertFile, append(root.EncodePEM(f.root.cert), "trailing junk"...))
			},
			file: root.RootCertFile, want: "contains data that is not PEM",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newCACerts(t)
			tc.mutate(t, f)
			b, signer, err := root.LoadCACertsDir(f.dir, f.loadKey, now)
			require.Nil(t, b)
			require.Nil(t, signer)
			require.Error(t, err)
			require.Contains(t, err.Error(), f.path(tc.file))
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "PRIVATE KEY")
		})
	}
}

// CACertsBundle checks the public files as LoadCACertsDir does, except
// that root-cert.pem may hold an issuing CA (a file root,
// root.file.rootCert, need not be self-signed): the live `meshca cacerts`
// export of such a serve must work as the offline one does.
func TestCACertsBundle_ChecksTheChainAndAcceptsAnIssuingCAAsAnchor(t *testing.T) {
	ent := newRoot(t, "enterprise root", 10*365*24*time.Hour)
	issuing := issue(t, ent, &x509.Certificate{Subject: pkix.Name{CommonName: "enterprise issuing"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign})
	in := mint(t, issuing, 365*24*time.Hour)
	name := func(n string) string { return "serve's " + n }
	files := map[string][]byte{
		root.CACertFile:    root.EncodePEM(in.cert),
		root.CertChainFile: root.EncodePEM(in.cert, issuing.cert),
		root.RootCertFile:  root.EncodePEM(issuing.cert),
	}
	b, err := root.CACertsBundle(files, name, now)
	require.NoError(t, err)
	require.True(t, b.Cert.Equal(in.cert))
	require.True(t, b.Roots[0].Equal(issuing.cert))

	other := newRoot(t, "other root", 10*365*24*time.Hour)
	files[root.RootCertFile] = root.EncodePEM(other.cert)
	_, err = root.CACertsBundle(files, name, now)
	require.ErrorContains(t, err, "serve's ca-cert.pem does not verify to serve's root-cert.pem: x509: certificate signed by unknown authority")
}
