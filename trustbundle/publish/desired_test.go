package publish

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/root"
)

func TestCompile_RejectsInconsistentDesired(t *testing.T) {
	ca, other := newTestCA(t, "C"), newTestCA(t, "other")
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	notCA := *ca.root
	notCA.IsCA = false
	tests := map[string]struct {
		d    Desired
		want string
	}{
		"no roots":                {Desired{}, "no roots to publish"},
		"a root that is not a CA": {Desired{Roots: []*x509.Certificate{&notCA}}, "is not a CA certificate"},
		"a key without a bundle":  {Desired{Key: leafKey, Roots: ca.bundle.Roots}, "without Desired.Bundle"},
		"a key of another CA":     {Desired{Bundle: ca.bundle, Key: other.key}, "does not match the signing certificate"},
		"CRLs that are not PEM":   {Desired{Roots: ca.bundle.Roots, CRLs: []byte("junk")}, "not PEM"},
		"a certificate as CRL":    {Desired{Roots: ca.bundle.Roots, CRLs: root.EncodePEM(ca.root)}, "only X509 CRL blocks"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := compile(tc.d)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestCompile_DeduplicatesRootsAndLeavesRootCertToTheMerge(t *testing.T) {
	a, b := newTestCA(t, "A"), newTestCA(t, "B")
	st, err := compile(a.desired(a.crl(t, 1), a.root, b.root, a.root))
	require.NoError(t, err)
	require.Equal(t, []*x509.Certificate{a.root, b.root}, st.roots)
	require.Equal(t, root.EncodePEM(a.root, b.root), st.rootsPEM)
	require.NotContains(t, st.files, "root-cert.pem")
	require.Contains(t, st.files, "ca-crl.pem")
}

func TestPublishedRoots_FollowsTheByteAppendRule(t *testing.T) {
	a, b, c := newTestCA(t, "A").root, newTestCA(t, "B").root, newTestCA(t, "C").root
	ab := root.EncodePEM(a, b)
	require.Equal(t, ab, publishedRoots(root.EncodePEM(a), []*x509.Certificate{b, a}), "new roots are appended")
	require.Equal(t, ab, publishedRoots(ab, []*x509.Certificate{b, a}), "the same set keeps its bytes")
	require.Equal(t, root.EncodePEM(b), publishedRoots(ab, []*x509.Certificate{b}), "removal leaves a substring")
	require.Equal(t, root.EncodePEM(c), publishedRoots([]byte("garbage"), []*x509.Certificate{c}), "unparsable bytes are replaced")
	require.Equal(t, root.EncodePEM(c), publishedRoots(nil, []*x509.Certificate{c}))
}

func TestBundleNames_FollowTheSignerPrefixRule(t *testing.T) {
	r := newTestCA(t, "A").root
	fp := fingerprint(r)
	require.Equal(t, "meshca.io:workload:roots", BundleName("meshca.io/workload"))
	require.Equal(t, "meshca.io:workload:root-"+fp[:16], RootBundleName("meshca.io/workload", fp))
	require.Equal(t, "meshca.io/trust-bundle=workload", BundleLabelSelector("meshca.io/workload"))
	require.Equal(t, "meshca.io/trust-bundle=istiod-ca", BundleLabelSelector(IstiodSignerName))
}

// Kubernetes counts a ConfigMap's key names in its 1 MiB data limit.
func TestCRLTooLarge_CountsTheKeyName(t *testing.T) {
	fits := MaxObjectBytes - len(crlConfigMapKey)
	require.False(t, crlTooLarge(&state{crl: make([]byte, fits)}))
	require.True(t, crlTooLarge(&state{crl: make([]byte, fits+1)}))
}

// root-cert.pem bytes meshca did not write are kept while they hold the
// roots (CRLF here; blank lines, openssl's text and blocks no parser takes
// alike), in the cacerts Secret and the ConfigMaps: istiod refuses a root
// file whose bytes neither contain nor are contained in the old ones, and
// in plug-in mode it writes the ConfigMaps from the Secret's bytes too, so
// a rewrite here would fight it.
func TestPublishedRoots_KeepsBytesMeshcaDidNotWrite(t *testing.T) {
	r := newTestCA(t, "A").root
	canonical := root.EncodePEM(r)
	crlf := bytes.ReplaceAll(canonical, []byte("\n"), []byte("\r\n"))
	require.Equal(t, crlf, publishedRoots(crlf, []*x509.Certificate{r}))
	skipped := append([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE----- trailing\nTEXT\n"), canonical...)
	require.Equal(t, skipped, publishedRoots(skipped, []*x509.Certificate{r}))
}
