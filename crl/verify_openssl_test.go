package crl_test

import (
	"math/big"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

func buildOpenSSLPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	require.NoError(t, err, "openssl is the independent CRL verifier of these tests; install it")
	return p
}

func buildOpenSSL(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(buildOpenSSLPath(t), args...).CombinedOutput()
	return string(out), err
}

// Every profile's full and delta CRL parses in OpenSSL, which prints the
// fields meshca put in.
func TestBuild_OpenSSLParsesEveryProfile(t *testing.T) {
	dir := t.TempDir()
	for _, profile := range buildProfiles {
		t.Run(profile, func(t *testing.T) {
			ca := newBuildCA(t, profile)
			full, err := crl.Build(crl.Params{
				Issuer: ca.cert, Number: 42, ThisUpdate: thisUpdate, NextUpdate: nextUpdate,
				FreshestCRL: []string{"http://meshca.example/crl/delta.crl"},
			}, entriesOf(sampleEntries()...), ca.signer())
			require.NoError(t, err)
			out, err := buildOpenSSL(t, "crl", "-inform", "DER", "-in", writeFile(t, dir, profile+"-full.der", full), "-noout", "-text")
			require.NoError(t, err, out)
			t.Logf("openssl crl -text (%s):\n%s", profile, out)
			for _, want := range []string{
				"Certificate Revocation List (CRL):",
				"Version 2 (0x1)",
				"Issuer: O = meshca, CN = CRL Test Intermediate " + profile,
				"Last Update: Dec  5 14:00:00 2026 GMT",
				"Next Update: Dec  6 14:00:00 2026 GMT",
				"X509v3 Authority Key Identifier:",
				"X509v3 CRL Number: \n                42",
				"X509v3 Freshest CRL: \n",
				"URI:http://meshca.example/crl/delta.crl",
				"Serial Number: 01\n        Revocation Date: Dec  1 10:11:12 2026 GMT\n        CRL entry extensions:\n            Invalidity Date: \n                Nov 30 23:59:58 2026 GMT\n            X509v3 CRL Reason Code: \n                Key Compromise",
				"Serial Number: 80\n        Revocation Date: Dec  1 23:00:00 2026 GMT\n",
				"Serial Number: FEFEFEFEFEFEFEFEFEFEFEFEFEFEFEFEFEFEFE01\n        Revocation Date: Jan  2 03:04:05 2051 GMT",
				"Serial Number: 7F\n        Revocation Date: Dec 31 23:59:59 1999 GMT",
				"AA Compromise",
			} {
				require.Contains(t, out, want)
			}
			require.Equal(t, 1, strings.Count(out, "X509v3 CRL Reason Code: \n                Superseded"))
			if profile == "catalyst" {
				require.Contains(t, out, "2.5.29.73: \n")
				require.Contains(t, out, "2.5.29.74: \n")
			}

			delta, err := crl.Build(crl.Params{Issuer: ca.cert, Number: 43, BaseNumber: 42, ThisUpdate: thisUpdate, NextUpdate: nextUpdate},
				entriesOf(sampleEntries()[:1]...), ca.signer())
			require.NoError(t, err)
			out, err = buildOpenSSL(t, "crl", "-inform", "DER", "-in", writeFile(t, dir, profile+"-delta.der", delta), "-noout", "-text")
			require.NoError(t, err, out)
			require.Contains(t, out, "X509v3 Delta CRL Indicator: critical\n                42")
			require.Contains(t, out, "X509v3 CRL Number: \n                43")
		})
	}
}

// openssl verify -crl_check rejects a revoked leaf and accepts a good one,
// for the profiles whose chain OpenSSL can verify (ECDSA signatures).
func TestBuild_OpenSSLVerifyCRLCheck(t *testing.T) {
	dir := t.TempDir()
	for _, profile := range []string{"classical", "catalyst"} {
		t.Run(profile, func(t *testing.T) {
			ca := newBuildCA(t, profile)
			good, revoked := ca.leaf(t, 1001), ca.leaf(t, 1002)
			now := time.Now()
			rootPEM := writeFile(t, dir, profile+"-root.pem", pemOf("CERTIFICATE", ca.root.Raw))
			interPEM := writeFile(t, dir, profile+"-inter.pem", pemOf("CERTIFICATE", ca.cert.Raw))
			goodPEM := writeFile(t, dir, profile+"-good.pem", pemOf("CERTIFICATE", good.Raw))
			revokedPEM := writeFile(t, dir, profile+"-revoked.pem", pemOf("CERTIFICATE", revoked.Raw))
			verify := func(crlDER []byte, leaf string, extra ...string) (string, error) {
				crlPEM := writeFile(t, dir, profile+"-crl.pem", pemOf("X509 CRL", crlDER))
				args := append([]string{"verify", "-x509_strict", "-crl_check", "-CAfile", rootPEM, "-untrusted", interPEM, "-CRLfile", crlPEM}, extra...)
				return buildOpenSSL(t, append(args, leaf)...)
			}
			entry := crl.Entry{Serial: revoked.SerialNumber.Bytes(), RevokedAt: now.Add(-time.Minute), Reason: store.ReasonKeyCompromise}
			other := crl.Entry{Serial: big.NewInt(77).Bytes(), RevokedAt: now.Add(-time.Hour)}

			full, err := crl.Build(crl.Params{Issuer: ca.cert, Number: 1, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)},
				entriesOf(other, entry), ca.signer())
			require.NoError(t, err)
			out, err := verify(full, revokedPEM)
			require.Error(t, err, out)
			require.Contains(t, out, "certificate revoked")
			out, err = verify(full, goodPEM)
			require.NoError(t, err, out)
			require.Contains(t, out, goodPEM+": OK")

			empty, err := crl.Build(crl.Params{Issuer: ca.cert, Number: 2, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)},
				entriesOf(), ca.signer())
			require.NoError(t, err)
			out, err = verify(empty, revokedPEM)
			require.NoError(t, err, "a CRL without entries revokes nothing: %s", out)

			// A delta CRL on top of a full CRL that does not list the leaf.
			// OpenSSL looks for delta CRLs only when the full CRL (or the
			// certificate) names them in FreshestCRL.
			base, err := crl.Build(crl.Params{Issuer: ca.cert, Number: 3, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour),
				FreshestCRL: []string{"http://meshca.example/delta.crl"}},
				entriesOf(other), ca.signer())
			require.NoError(t, err)
			delta, err := crl.Build(crl.Params{Issuer: ca.cert, Number: 4, BaseNumber: 3, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)},
				entriesOf(entry), ca.signer())
			require.NoError(t, err)
			both := append(pemOf("X509 CRL", base), pemOf("X509 CRL", delta)...)
			crlPEM := writeFile(t, dir, profile+"-both.pem", both)
			out, err = buildOpenSSL(t, "verify", "-x509_strict", "-crl_check", "-use_deltas", "-CAfile", rootPEM, "-untrusted", interPEM, "-CRLfile", crlPEM, revokedPEM)
			require.Error(t, err, out)
			require.Contains(t, out, "certificate revoked")
			out, err = buildOpenSSL(t, "verify", "-x509_strict", "-crl_check", "-use_deltas", "-CAfile", rootPEM, "-untrusted", interPEM, "-CRLfile", crlPEM, goodPEM)
			require.NoError(t, err, out)

			// A CRL signed by another CA's key does not count.
			stranger := newBuildCA(t, "classical")
			forged, err := crl.Build(crl.Params{Issuer: stranger.cert, Number: 5, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)},
				entriesOf(entry), stranger.signer())
			require.NoError(t, err)
			out, err = verify(forged, goodPEM)
			require.Error(t, err, out)
			require.Contains(t, out, "unable to get certificate CRL")
		})
	}
}
