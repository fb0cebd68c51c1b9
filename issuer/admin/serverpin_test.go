package admin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The remote client accepts only meshca's own serving certificate as the
// admin server: a workload certificate from the same mesh roots that
// carries the admin listener's DNS name (a rule may allow DNS SANs) is
// refused before any token or request is sent.
func TestRemoteClient_RefusesAWorkloadCertificateAsTheServer(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mesh root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &key.PublicKey, key)
	require.NoError(t, err)
	ca, _ = x509.ParseCertificate(caDER)
	leaf := func(uri string, eku ...x509.ExtKeyUsage) tls.Certificate {
		lk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), DNSNames: []string{"localhost"}, ExtKeyUsage: eku,
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
		if uri != "" {
			u, _ := url.Parse(uri)
			tmpl.URIs = []*url.URL{u}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &lk.PublicKey, key)
		require.NoError(t, err)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: lk}
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	status := func(srv tls.Certificate) error {
		rv := &memRevoker{}
		s, err := ListenTCP(RemoteOptions{
			Options: Options{Revoker: rv, Revocations: rv},
			Listen:  "127.0.0.1:0",
			TLS:     &tls.Config{Certificates: []tls.Certificate{srv}},
			Tokens:  tokenAuthn{}, Access: access{},
		})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx) }()
		defer func() { cancel(); <-done }()
		c := NewRemoteClient(s.Path(), &tls.Config{RootCAs: roots, ServerName: "localhost"}, "root")
		defer c.Close()
		_, err = c.Status(context.Background())
		return err
	}
	// meshca's serving certificate: DNS names, serverAuth, no SPIFFE ID.
	require.NoError(t, status(leaf("", x509.ExtKeyUsageServerAuth)))
	// A workload's: its SPIFFE ID, serverAuth and clientAuth.
	err = status(leaf("spiffe://cluster.local/ns/default/sa/app", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth))
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "the admin server presented a certificate with the URI SAN spiffe://cluster.local/ns/default/sa/app, a workload certificate: meshca's own serving certificate has no SPIFFE ID; check --admin-address"), err.Error())
	_, isStatus := errors.AsType[*StatusError](err)
	require.False(t, isStatus, "no request reached a server")
	// A client-only certificate is no serving certificate either.
	err = status(leaf("", x509.ExtKeyUsageClientAuth))
	require.Error(t, err)
}
