package certenc

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/oid"
)

// parityCase is one template encoded both by certenc and by Go's
// x509.CreateCertificate.
type parityCase struct {
	tmpl       *x509.Certificate
	subjectKey crypto.Signer
	issuerKey  crypto.Signer
	// issuer is nil for a self-signed certificate.
	issuer *x509.Certificate
}

func newParityCase(t *testing.T, subjectKind, issuerKind string, mk func(subjectSPKI, issuerSKID []byte) *x509.Certificate) parityCase {
	subjectKey, issuerKey := genKey(t, subjectKind), genKey(t, issuerKind)
	issuerSPKI := spkiOf(t, issuerKey.Public())
	issuer := rootTemplate(t, issuerSPKI, "meshca issuer")
	issuer.PublicKey = issuerKey.Public()
	return parityCase{
		tmpl:       mk(spkiOf(t, subjectKey.Public()), issuer.SubjectKeyId),
		subjectKey: subjectKey,
		issuerKey:  issuerKey,
		issuer:     issuer,
	}
}

func selfSignedCase(t *testing.T, kind string, mk func(spki []byte) *x509.Certificate) parityCase {
	key := genKey(t, kind)
	return parityCase{tmpl: mk(spkiOf(t, key.Public())), subjectKey: key, issuerKey: key}
}

func parityCases(t *testing.T) map[string]func(t *testing.T) parityCase {
	return map[string]func(t *testing.T) parityCase{
		"workload leaf, P-256 key, empty subject, critical URI SAN, P-256 issuer": func(t *testing.T) parityCase {
			return newParityCase(t, "P256", "P256", func(_, skid []byte) *x509.Certificate { return workloadTemplate(t, skid) })
		},
		"workload leaf, RSA-2048 key (istio-agent default), P-384 issuer": func(t *testing.T) parityCase {
			return newParityCase(t, "RSA2048", "P384", func(_, skid []byte) *x509.Certificate { return workloadTemplate(t, skid) })
		},
		"workload leaf, P-384 key, RSA-3072 issuer, CRL distribution point": func(t *testing.T) parityCase {
			return newParityCase(t, "P384", "RSA3072", func(_, skid []byte) *x509.Certificate {
				c := workloadTemplate(t, skid)
				c.CRLDistributionPoints = []string{"http://meshca.istio-system.svc:8080/crl/intermediate.crl"}
				return c
			})
		},
		"workload leaf, Ed25519 key, Ed25519 issuer, extra extensions": func(t *testing.T) parityCase {
			return newParityCase(t, "Ed25519", "Ed25519", func(_, skid []byte) *x509.Certificate {
				c := workloadTemplate(t, skid)
				c.ExtraExtensions = []pkix.Extension{
					{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Value: []byte{0x05, 0x00}},
					{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 2}, Critical: true, Value: []byte{0x04, 0x01, 0xaa}},
				}
				return c
			})
		},
		"extra extension replaces the built-in key usage": func(t *testing.T) parityCase {
			return newParityCase(t, "P256", "P256", func(_, skid []byte) *x509.Certificate {
				c := workloadTemplate(t, skid)
				c.ExtraExtensions = []pkix.Extension{{Id: oid.KeyUsage, Critical: true, Value: []byte{0x03, 0x02, 0x07, 0x80}}}
				return c
			})
		},
		"gateway leaf with subject, DNS, IPv4, IPv6, email SANs (non-critical), AIA, unknown EKU": func(t *testing.T) parityCase {
			return newParityCase(t, "P256", "P256", func(_, skid []byte) *x509.Certificate {
				c := workloadTemplate(t, skid)
				c.RawSubject = nil
				c.Subject = pkix.Name{CommonName: "gw.example.com", Organization: []string{"example"}, Country: []string{"DE"}}
				c.DNSNames = []string{"gw.example.com", "*.apps.example.com"}
				c.IPAddresses = []net.IP{net.ParseIP("10.1.2.3"), net.ParseIP("2001:db8::1")}
				c.EmailAddresses = []string{"mesh@example.com"}
				c.OCSPServer = []string{"http://ocsp.example.com"}
				c.IssuingCertificateURL = []string{"http://ca.example.com/int.crt"}
				c.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 99999, 3}}
				c.URIs = append(c.URIs, &url.URL{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/gw/sa/ingress"})
				return c
			})
		},
		"intermediate CA, pathlen 0, P-256 key, RSA-2048 issuer, CRL DP": func(t *testing.T) parityCase {
			return newParityCase(t, "P256", "RSA2048", func(spki, skid []byte) *x509.Certificate {
				c := intermediateTemplate(t, spki, skid)
				c.CRLDistributionPoints = []string{"http://vault.example.com/v1/pki/crl"}
				return c
			})
		},
		"intermediate CA, pathlen 2, P-384 key, P-384 issuer": func(t *testing.T) parityCase {
			return newParityCase(t, "P384", "P384", func(spki, skid []byte) *x509.Certificate {
				c := intermediateTemplate(t, spki, skid)
				c.MaxPathLen, c.MaxPathLenZero = 2, false
				return c
			})
		},
		"leaf with basic constraints CA:false and MaxPathLen -1": func(t *testing.T) parityCase {
			return newParityCase(t, "P256", "P256", func(_, skid []byte) *x509.Certificate {
				c := workloadTemplate(t, skid)
				c.MaxPathLen = -1
				return c
			})
		},
		"self-signed root, P-256, no pathlen": func(t *testing.T) parityCase {
			return selfSignedCase(t, "P256", func(spki []byte) *x509.Certificate { return rootTemplate(t, spki, "meshca root") })
		},
		"self-signed root, RSA-3072, with AKID, validity past 2050 (GeneralizedTime)": func(t *testing.T) parityCase {
			return selfSignedCase(t, "RSA3072", func(spki []byte) *x509.Certificate {
				c := rootTemplate(t, spki, "meshca long root")
				c.AuthorityKeyId = c.SubjectKeyId
				c.NotAfter = time.Date(2061, 3, 4, 5, 6, 7, 890, time.FixedZone("X", 3600))
				return c
			})
		},
		"self-signed root, Ed25519, validity before 1950 and sub-second times": func(t *testing.T) parityCase {
			return selfSignedCase(t, "Ed25519", func(spki []byte) *x509.Certificate {
				c := rootTemplate(t, spki, "meshca old root")
				c.NotBefore = time.Date(1949, 12, 31, 23, 59, 59, 999999999, time.UTC)
				c.NotAfter = time.Date(2049, 12, 31, 23, 59, 59, 123, time.UTC)
				return c
			})
		},
		"self-signed root, P-521": func(t *testing.T) parityCase {
			return selfSignedCase(t, "P521", func(spki []byte) *x509.Certificate { return rootTemplate(t, spki, "meshca p521 root") })
		},
	}
}

func TestBuildTBS_IsByteIdenticalToGoCreateCertificate(t *testing.T) {
	for name, mk := range parityCases(t) {
		t.Run(name, func(t *testing.T) {
			tc := mk(t)
			parent, issuerName := tc.tmpl, []byte(nil)
			if tc.issuer != nil {
				parent, issuerName = tc.issuer, tc.issuer.RawSubject
			}
			goDER, err := x509.CreateCertificate(rand.Reader, tc.tmpl, parent, tc.subjectKey.Public(), tc.issuerKey)
			require.NoError(t, err)
			goCert, err := x509.ParseCertificate(goDER)
			require.NoError(t, err)

			tmpl := &Template{Certificate: tc.tmpl, PublicKey: spkiOf(t, tc.subjectKey.Public()), Issuer: issuerName}
			alg, err := SignatureAlgorithmOf(tc.issuerKey)
			require.NoError(t, err)
			tbs, err := BuildTBS(tmpl, alg)
			require.NoError(t, err)
			require.Equal(t, goCert.RawTBSCertificate, tbs)

			der, err := Build(tmpl, tc.issuerKey, rand.Reader)
			require.NoError(t, err)
			cert, err := x509.ParseCertificate(der)
			require.NoError(t, err)
			require.Equal(t, goCert.RawTBSCertificate, cert.RawTBSCertificate)
			require.Equal(t, goCert.SignatureAlgorithm, cert.SignatureAlgorithm)
			signer := cert
			if tc.issuer != nil {
				signer = goCertOf(t, tc.issuer, tc.issuerKey)
			}
			require.NoError(t, cert.CheckSignatureFrom(signer))

			// RSA PKCS#1 v1.5 and Ed25519 signatures are deterministic,
			// so the whole certificate must match too.
			switch tc.issuerKey.Public().(type) {
			case *rsa.PublicKey, ed25519.PublicKey:
				require.Equal(t, goDER, der)
			}
		})
	}
}

func TestBuildTBS_DefaultsSubjectPublicKeyFromCertificate(t *testing.T) {
	key := genKey(t, "P256")
	c := rootTemplate(t, spkiOf(t, key.Public()), "root")
	c.PublicKey = key.Public()
	goDER, err := x509.CreateCertificate(rand.Reader, c, c, key.Public(), key)
	require.NoError(t, err)
	goCert, err := x509.ParseCertificate(goDER)
	require.NoError(t, err)

	alg, err := SignatureAlgorithmOf(key)
	require.NoError(t, err)
	tbs, err := BuildTBS(&Template{Certificate: c}, alg)
	require.NoError(t, err)
	require.Equal(t, goCert.RawTBSCertificate, tbs)
}

func TestSubjectKeyID_MatchesGoDerivedKeyID(t *testing.T) {
	for _, kind := range []string{"P256", "RSA2048", "Ed25519"} {
		key := genKey(t, kind)
		c := rootTemplate(t, spkiOf(t, key.Public()), "root")
		c.SubjectKeyId = nil // let Go derive it
		der, err := x509.CreateCertificate(rand.Reader, c, c, key.Public(), key)
		require.NoError(t, err)
		goCert, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		require.Equal(t, goCert.SubjectKeyId, skidOf(t, spkiOf(t, key.Public())), kind)
	}
}

// goCertOf self-signs c with key through Go, for CheckSignatureFrom.
func goCertOf(t *testing.T, c *x509.Certificate, key crypto.Signer) *x509.Certificate {
	der, err := x509.CreateCertificate(rand.Reader, c, c, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert
}
