package oid_test

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
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/oid"
)

// Each identifier is checked against what crypto/x509, an independent
// implementation, writes for the same field.

func extensionIDs(exts []pkix.Extension) []string {
	var ids []string
	for _, e := range exts {
		ids = append(ids, e.Id.String())
	}
	return ids
}

func TestCertificateExtensions_AreThoseCryptoX509Writes(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	u, _ := url.Parse("spiffe://td/ns/a/sa/b")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, SubjectKeyId: []byte{1}, AuthorityKeyId: []byte{2},
		URIs: []*url.URL{u}, CRLDistributionPoints: []string{"http://crl"},
		OCSPServer: []string{"http://ocsp"}, IssuingCertificateURL: []string{"http://issuer"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	ids := extensionIDs(c.Extensions)
	for name, id := range map[string]asn1.ObjectIdentifier{
		"SubjectKeyID": oid.SubjectKeyID, "KeyUsage": oid.KeyUsage, "SubjectAltName": oid.SubjectAltName,
		"BasicConstraints": oid.BasicConstraints, "CRLDistributionPoints": oid.CRLDistributionPoints,
		"AuthorityKeyID": oid.AuthorityKeyID, "ExtKeyUsage": oid.ExtKeyUsage, "AuthorityInfoAccess": oid.AuthorityInfoAccess,
	} {
		require.Contains(t, ids, id.String(), name)
	}

	// The access methods, inside the authorityInfoAccess extension.
	for _, e := range c.Extensions {
		if !e.Id.Equal(oid.AuthorityInfoAccess) {
			continue
		}
		var ads []struct {
			Method   asn1.ObjectIdentifier
			Location asn1.RawValue
		}
		_, err := asn1.Unmarshal(e.Value, &ads)
		require.NoError(t, err)
		require.Len(t, ads, 2)
		require.True(t, ads[0].Method.Equal(oid.AccessOCSP), "id-ad-ocsp")
		require.True(t, ads[1].Method.Equal(oid.AccessCAIssuers), "id-ad-caIssuers")
	}
}

func TestCRLExtensions_AreThoseCryptoX509Writes(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	issuer := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, SubjectKeyId: []byte{9},
		KeyUsage: x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(7), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(3), RevocationTime: time.Now(), ReasonCode: 1}},
	}, issuer, key)
	require.NoError(t, err)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	ids := extensionIDs(crl.Extensions)
	require.Contains(t, ids, oid.CRLNumber.String())
	require.Contains(t, ids, oid.AuthorityKeyID.String())
	require.Contains(t, extensionIDs(crl.RevokedCertificateEntries[0].Extensions), oid.ReasonCode.String())

}

// Each identifier is the number its specification gives it: RFC 5280's
// ASN.1 module (A.2, id-ce and id-pe/id-ad), ITU-T X.509 (10/2019) 9.8,
// RFC 4055, RFC 5758 and RFC 8410. The tests above check the same numbers
// against crypto/x509 where it writes them.
func TestIdentifiers_AreTheSpecificationsNumbers(t *testing.T) {
	for want, id := range map[string]asn1.ObjectIdentifier{
		"2.5.29.14": oid.SubjectKeyID, "2.5.29.15": oid.KeyUsage, "2.5.29.17": oid.SubjectAltName,
		"2.5.29.19": oid.BasicConstraints, "2.5.29.20": oid.CRLNumber, "2.5.29.21": oid.ReasonCode,
		"2.5.29.24": oid.InvalidityDate, "2.5.29.27": oid.DeltaCRLIndicator, "2.5.29.28": oid.IssuingDistributionPoint,
		"2.5.29.29": oid.CertificateIssuer, "2.5.29.31": oid.CRLDistributionPoints, "2.5.29.35": oid.AuthorityKeyID,
		"2.5.29.37": oid.ExtKeyUsage, "2.5.29.46": oid.FreshestCRL,
		"1.3.6.1.5.5.7.1.1": oid.AuthorityInfoAccess, "1.3.6.1.5.5.7.48.1": oid.AccessOCSP, "1.3.6.1.5.5.7.48.2": oid.AccessCAIssuers,
		"2.5.29.72": oid.SubjectAltPublicKeyInfo, "2.5.29.73": oid.AltSignatureAlgorithm, "2.5.29.74": oid.AltSignatureValue,
		"1.2.840.113549.1.1.11": oid.SHA256WithRSA, "1.2.840.10045.4.3.2": oid.ECDSAWithSHA256,
		"1.2.840.10045.4.3.3": oid.ECDSAWithSHA384, "1.2.840.10045.4.3.4": oid.ECDSAWithSHA512, "1.3.101.112": oid.Ed25519,
	} {
		require.Equal(t, want, id.String())
	}
}

func TestClassicalSignatures_AreTheAlgorithmsCryptoX509Writes(t *testing.T) {
	ec256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ec521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	keys := map[x509.SignatureAlgorithm]crypto.Signer{
		x509.SHA256WithRSA: rk, x509.ECDSAWithSHA256: ec256, x509.ECDSAWithSHA384: ec384,
		x509.ECDSAWithSHA512: ec521, x509.PureEd25519: ed,
	}
	require.Len(t, oid.ClassicalSignatures, len(keys))
	for _, s := range oid.ClassicalSignatures {
		k := keys[s.Algorithm]
		require.NotNil(t, k, s.Algorithm.String())
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), SignatureAlgorithm: s.Algorithm}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
		require.NoError(t, err)
		var cert struct {
			TBS    asn1.RawValue
			SigAlg pkix.AlgorithmIdentifier
		}
		_, err = asn1.Unmarshal(der, &cert)
		require.NoError(t, err)
		require.True(t, cert.SigAlg.Algorithm.Equal(s.OID), "%s: crypto/x509 writes %s, oid has %s", s.Algorithm, cert.SigAlg.Algorithm, s.OID)
	}
}
