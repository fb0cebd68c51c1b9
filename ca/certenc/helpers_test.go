package certenc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/stretchr/testify/require"
)

var oidMLDSA65 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 18}

// mldsaSigner is the test stand-in for ca/pqc's ML-DSA-65 signer: a
// crypto.Signer with SignatureAlgorithm, signing hedged with an empty
// context, straight on circl.
type mldsaSigner struct {
	pk   *mldsa65.PublicKey
	sk   *mldsa65.PrivateKey
	seed [mldsa65.SeedSize]byte
	// faulty makes Sign return a corrupted signature.
	faulty bool
}

// mldsaPublic is the signer's public key with the Verify method ca/pqc's
// keys have, so that certenc self-checks the signatures.
type mldsaPublic struct{ pk *mldsa65.PublicKey }

func (p mldsaPublic) Verify(msg, sig []byte) error {
	if !mldsa65.Verify(p.pk, msg, nil, sig) {
		return errors.New("ML-DSA-65 verification failure")
	}
	return nil
}

func newMLDSASigner(t testing.TB) *mldsaSigner {
	t.Helper()
	s := &mldsaSigner{}
	_, err := rand.Read(s.seed[:])
	require.NoError(t, err)
	s.pk, s.sk = mldsa65.NewKeyFromSeed(&s.seed)
	return s
}

func (s *mldsaSigner) Public() crypto.PublicKey { return mldsaPublic{s.pk} }

func (s *mldsaSigner) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != 0 {
		return nil, errors.New("ML-DSA signs the message, not a digest")
	}
	sig := make([]byte, mldsa65.SignatureSize)
	if err := mldsa65.SignTo(s.sk, msg, nil, true, sig); err != nil {
		return nil, err
	}
	if s.faulty {
		sig[len(sig)/2] ^= 0x01
	}
	return sig, nil
}

func (s *mldsaSigner) SignatureAlgorithm() pkix.AlgorithmIdentifier {
	return pkix.AlgorithmIdentifier{Algorithm: oidMLDSA65}
}

// spki is the RFC 9881 SubjectPublicKeyInfo: parameters absent, raw key.
func (s *mldsaSigner) spki(t testing.TB) []byte {
	t.Helper()
	der, err := asn1.Marshal(struct {
		Alg pkix.AlgorithmIdentifier
		Key asn1.BitString
	}{pkix.AlgorithmIdentifier{Algorithm: oidMLDSA65}, asn1.BitString{Bytes: s.pk.Bytes(), BitLength: 8 * mldsa65.PublicKeySize}})
	require.NoError(t, err)
	return der
}

func genKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch kind {
	case "P256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "P384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "P521":
		k, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "RSA2048":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "RSA3072":
		k, err = rsa.GenerateKey(rand.Reader, 3072)
	case "Ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	require.NoError(t, err)
	return k
}

func spkiOf(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	return der
}

func skidOf(t testing.TB, spki []byte) []byte {
	t.Helper()
	id, err := SubjectKeyID(spki)
	require.NoError(t, err)
	return id
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	b := make([]byte, 16)
	_, err := rand.Read(b)
	require.NoError(t, err)
	b[0] &= 0x7f
	b[0] |= 0x01 // never zero, always 16 octets
	return new(big.Int).SetBytes(b)
}

func name(t testing.TB, cn string) []byte {
	t.Helper()
	der, err := asn1.Marshal(pkix.Name{Organization: []string{"meshca test"}, CommonName: cn}.ToRDNSequence())
	require.NoError(t, err)
	return der
}

func rootTemplate(t testing.TB, spki []byte, cn string) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber:          serial(t),
		RawSubject:            name(t, cn),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          skidOf(t, spki),
	}
}

func intermediateTemplate(t testing.TB, spki, issuerSKID []byte) *x509.Certificate {
	c := rootTemplate(t, spki, "meshca intermediate")
	c.MaxPathLen, c.MaxPathLenZero = 0, true
	c.AuthorityKeyId = issuerSKID
	return c
}

// workloadTemplate is an Istio workload leaf as istiod issues it: empty
// subject, one SPIFFE URI SAN (critical, RFC 5280 4.2.1.6),
// digitalSignature|keyEncipherment, serverAuth+clientAuth, CA:false.
func workloadTemplate(t testing.TB, issuerSKID []byte) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber:          serial(t),
		RawSubject:            emptyName,
		NotBefore:             now.Add(-2 * time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		AuthorityKeyId:        issuerSKID,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/default/sa/bookinfo"}},
	}
}

func writePEM(t testing.TB, dir, file string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, file)
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	return p
}

func writeDER(t testing.TB, dir, file string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, file)
	require.NoError(t, os.WriteFile(p, der, 0o600))
	return p
}

func findExtension(c *x509.Certificate, oid asn1.ObjectIdentifier) (pkix.Extension, bool) {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return e, true
		}
	}
	return pkix.Extension{}, false
}

func flipByte(b []byte, i int) []byte {
	out := append([]byte(nil), b...)
	out[i] ^= 0x01
	return out
}
