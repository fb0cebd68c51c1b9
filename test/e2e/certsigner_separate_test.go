package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"

	"github.com/meshca/meshca/rotation"
)

// TestIstioEndpoint_CertSignerWithItsOwnIntermediate runs meshca serve with
// a signer that has its own intermediate, as istiod's per-signer CAs: its
// leaves chain to that intermediate (not the default one) under the same
// root; a workload renews with such a leaf as its client certificate; the
// signer's rotation is reported as ca="intermediate:gateways" (metrics
// and meshca status); a revoked leaf of the signer appears on the CRL its
// intermediate signs, served beside the default's; and a restart resumes
// the same intermediate instead of minting another.
func TestIstioEndpoint_CertSignerWithItsOwnIntermediate(t *testing.T) {
	dir := initCA(t)
	appendYAML(t, dir, "authentication:\n  certSigners:\n    - name: gateways\n      profile: classical\n      intermediate:\n        separate: true\n")
	csrPath, keyPEM := writeCSRWithKey(t, t.TempDir(), workloadID)
	clientChain := meshca(t, "sign", "--dir", dir, "--csr", csrPath, "--identity", workloadID)
	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(rootPEM))
	dial := func(certPEM string, key []byte) pb.IstioCertificateServiceClient {
		cert, err := tls.X509KeyPair([]byte(certPEM), key)
		require.NoError(t, err)
		conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: roots, ServerName: servingName, Certificates: []tls.Certificate{cert},
		})))
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		return pb.NewIstioCertificateServiceClient(conn)
	}
	type issued struct {
		chain       []string
		leaf, inter *x509.Certificate
		key         []byte
	}
	call := func(client pb.IstioCertificateServiceClient, signer string) issued {
		t.Helper()
		csr, key := agentStyleCSR(t, workloadID)
		meta, err := structpb.NewStruct(map[string]any{"CertSigner": signer})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := client.CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: string(csr), ValidityDuration: 3600, Metadata: meta})
		require.NoError(t, err, s.logs())
		chain := resp.GetCertChain()
		require.Len(t, chain, 3, "leaf, intermediate, root")
		require.Equal(t, string(rootPEM), chain[2])
		leaf, inter := splitPEM(t, chain[0])[0], splitPEM(t, chain[1])[0]
		require.Equal(t, []string{workloadID}, uriStrings(leaf))
		require.NoError(t, leaf.CheckSignatureFrom(inter), "%q: the leaf is signed by the intermediate of its chain", signer)
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: poolOf(inter), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		require.NoError(t, err, "%q: the chain verifies to the mesh root", signer)
		return issued{chain: chain, leaf: leaf, inter: inter, key: key}
	}

	client := dial(clientChain, keyPEM)
	def := call(client, "")
	gw := call(client, "gateways")
	require.NotEqual(t, def.inter.Raw, gw.inter.Raw, "the gateways signer has its own intermediate")
	require.Equal(t, "meshca intermediate", def.inter.Subject.CommonName)
	require.Equal(t, "meshca intermediate signer gateways", gw.inter.Subject.CommonName)
	require.True(t, gw.inter.IsCA)
	require.Equal(t, 0, gw.inter.MaxPathLen)
	require.True(t, gw.inter.MaxPathLenZero)

	// A workload renews with its gateways certificate as client certificate.
	renewed := call(dial(gw.chain[0]+gw.chain[1], gw.key), "gateways")
	require.Equal(t, gw.inter.Raw, renewed.inter.Raw)

	// The gateways intermediate rotates on its own: reported apart.
	m := s.metrics(t)
	require.ElementsMatch(t, []string{"intermediate", "root", "intermediate:gateways"}, labelValues(m, "meshca_rotation_phase", "ca"))
	var doc statusDoc
	require.NoError(t, json.Unmarshal([]byte(meshca(t, "status", "--dir", dir, "-o", "json")), &doc))
	var rot []rotation.Status
	require.NoError(t, json.Unmarshal(doc.Rotation, &rot))
	require.Len(t, rot, 3)
	require.Equal(t, [2]string{"intermediate:gateways", "idle"}, [2]string{rot[2].CA, rot[2].Phase})
	// scopeOf is the CRL scope (gen-N) of an intermediate, as meshca status lists it.
	scopeOf := func(inter *x509.Certificate) string {
		t.Helper()
		var doc statusDoc
		require.NoError(t, json.Unmarshal([]byte(meshca(t, "status", "--dir", dir, "-o", "json")), &doc))
		for _, c := range doc.Certificates {
			if c.Kind == "intermediate" && c.Serial == serialOf(inter) {
				require.Equal(t, "active", c.State)
				require.Equal(t, "ok", c.Health)
				return c.Name
			}
		}
		require.Fail(t, "meshca status does not list the intermediate", "%+v", doc.Certificates)
		return ""
	}
	gwScope := scopeOf(gw.inter)

	// Revoking a gateways leaf puts it on the CRL its intermediate signs.
	meshca(t, "revoke", "--dir", dir, "--serial", serialOf(gw.leaf), "--reason", "keyCompromise")
	var l *x509.RevocationList
	waitFor(t, 10*time.Second, "the gateways CRL lists the revoked leaf", func() bool {
		l = s.fetchCRL(t, gwScope+".crl")
		return lists(l, serialOf(gw.leaf))
	})
	require.NoError(t, l.CheckSignatureFrom(gw.inter), "the gateways intermediate signs its CRL")
	require.Equal(t, gw.inter.RawSubject, l.RawIssuer)
	require.False(t, lists(s.fetchCRL(t, "gen-1.crl"), serialOf(gw.leaf)), "not on the default intermediate's CRL")

	// meshca rotate intermediate --signer rotates the gateways intermediate
	// alone; a leaf of the new one authenticates at once, and the old
	// one's CRL stays served while its leaves may be in use.
	out := meshca(t, "rotate", "intermediate", "--dir", dir, "--signer", "gateways")
	require.Contains(t, out, "CN=meshca intermediate signer gateways")
	gw2 := call(client, "gateways")
	require.NotEqual(t, gw.inter.Raw, gw2.inter.Raw, "a new gateways intermediate")
	require.Equal(t, gw.inter.Subject.String(), gw2.inter.Subject.String())
	require.Equal(t, def.inter.Raw, call(client, "").inter.Raw, "the default intermediate is left alone")
	call(dial(gw2.chain[0]+gw2.chain[1], gw2.key), "gateways")
	require.True(t, lists(s.fetchCRL(t, gwScope+".crl"), serialOf(gw.leaf)), "the previous gateways intermediate's CRL is still served")
	require.NoError(t, s.fetchCRL(t, scopeOf(gw2.inter)+".crl").CheckSignatureFrom(gw2.inter), "the new gateways intermediate has its CRL")
	require.Contains(t, errorLine(t, meshcaFails(t, "rotate", "intermediate", "--dir", dir, "--signer", "nope")),
		`signer "nope" has no intermediate of its own; signers with one (authentication.certSigners with intermediate.separate): [gateways]`)

	// A restart resumes the same gateways intermediate.
	s.sigterm(t)
	s = startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	client = dial(clientChain, keyPEM)
	again := call(client, "gateways")
	require.Equal(t, gw2.inter.Raw, again.inter.Raw, "the restarted serve signs with the same gateways intermediate")
	require.Equal(t, def.inter.Raw, call(client, "").inter.Raw)
	gw2Scope := scopeOf(gw2.inter)

	// The signer loses its own intermediate while its leaves are valid:
	// the gateways CRLs stay served, also after the default rotates.
	s.sigterm(t)
	setYAML(t, dir, "      intermediate:\n        separate: true\n", "")
	s = startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	client = dial(clientChain, keyPEM)
	require.Equal(t, def.inter.Raw, call(client, "gateways").inter.Raw, "the default intermediate signs for the signer now")
	meshca(t, "rotate", "intermediate", "--dir", dir)
	require.NotEqual(t, def.inter.Raw, call(client, "").inter.Raw, "the default intermediate rotated")
	require.NoError(t, s.fetchCRL(t, gw2Scope+".crl").CheckSignatureFrom(gw2.inter), "the former signer's CRL is still served")
	require.True(t, lists(s.fetchCRL(t, gwScope+".crl"), serialOf(gw.leaf)))
}
