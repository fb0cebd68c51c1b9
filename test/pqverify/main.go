// Command pqverify independently verifies certificates made by meshca's
// ca/certenc with Go 1.27's crypto/x509 and crypto/mldsa. It exists only
// for tests: meshca itself builds with Go 1.26, which cannot check ML-DSA.
// It shares no code with meshca; in particular it computes the Catalyst
// preTBSCertificate on its own, with encoding/asn1.
//
// Usage (certificates are DER files, root first, leaf last):
//
//	pqverify chain    <root> [<intermediate>...] <leaf>
//	    parse every certificate with crypto/x509, check each signature with
//	    CheckSignatureFrom (the root's against itself) and build the chain
//	    with Certificate.Verify.
//	pqverify catalyst <root> [<intermediate>...] <leaf>
//	    as chain, then check each certificate's alternative signature:
//	    2.5.29.72/.73/.74 present as needed and non-critical, the
//	    altSignatureValue verified with crypto/mldsa (empty context) over
//	    the preTBSCertificate, with the issuer's subjectAltPublicKeyInfo.
//	pqverify retbs    <cert> <issuer-cert> <issuer-ml-dsa-seed>
//	    re-create cert with Go 1.27's x509.CreateCertificate from its own
//	    parsed fields, signed with the ML-DSA key derived from the 32-byte
//	    seed file, and require a byte-identical TBSCertificate.
//	pqverify crl      <issuer> <crl>
//	    parse the DER CRL with crypto/x509.ParseRevocationList and check its
//	    signature with CheckSignatureFrom(issuer) (classical or ML-DSA); if
//	    it carries 2.5.29.73/.74 (a Catalyst CRL), check the alternative
//	    signature with crypto/mldsa over the preTBSCertList (the
//	    TBSCertList without its signature field and without 2.5.29.74),
//	    with the issuer's subjectAltPublicKeyInfo.
//
// It prints one "ok" line per check and exits 1 at the first failure.
package main

import (
	"bytes"
	"crypto/mldsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"os"
)

var (
	oidSubjectAltPublicKeyInfo = asn1.ObjectIdentifier{2, 5, 29, 72}
	oidAltSignatureAlgorithm   = asn1.ObjectIdentifier{2, 5, 29, 73}
	oidAltSignatureValue       = asn1.ObjectIdentifier{2, 5, 29, 74}

	mldsaOIDs = map[string]mldsa.Parameters{
		"2.16.840.1.101.3.4.3.17": mldsa.MLDSA44(),
		"2.16.840.1.101.3.4.3.18": mldsa.MLDSA65(),
		"2.16.840.1.101.3.4.3.19": mldsa.MLDSA87(),
	}
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return errors.New("usage: pqverify chain|catalyst <root> [<intermediate>...] <leaf> | retbs <cert> <issuer> <seed>")
	}
	switch args[0] {
	case "chain":
		_, err := verifyChain(args[1:])
		return err
	case "catalyst":
		certs, err := verifyChain(args[1:])
		if err != nil {
			return err
		}
		return verifyCatalyst(args[1:], certs)
	case "crl":
		if len(args) != 3 {
			return errors.New("usage: pqverify crl <issuer> <crl>")
		}
		return verifyCRL(args[1], args[2])
	case "retbs":
		if len(args) != 4 {
			return errors.New("usage: pqverify retbs <cert> <issuer> <seed>")
		}
		return reTBS(args[1], args[2], args[3])
	default:
		return fmt.Errorf("unknown mode %q", args[0])
	}
}

func load(file string) (*x509.Certificate, error) {
	der, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return c, nil
}

func verifyChain(files []string) ([]*x509.Certificate, error) {
	certs := make([]*x509.Certificate, len(files))
	for i, f := range files {
		c, err := load(f)
		if err != nil {
			return nil, err
		}
		certs[i] = c
		issuer := c
		if i > 0 {
			issuer = certs[i-1]
		}
		if err := c.CheckSignatureFrom(issuer); err != nil {
			return nil, fmt.Errorf("%s: signature (%v) does not verify: %w", f, c.SignatureAlgorithm, err)
		}
		fmt.Printf("ok %s: %v signature verified by crypto/x509 (public key %v)\n", f, c.SignatureAlgorithm, c.PublicKeyAlgorithm)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(certs[0])
	for _, c := range certs[1 : len(certs)-1] {
		inters.AddCert(c)
	}
	leaf := certs[len(certs)-1]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("chain does not verify: %w", err)
	}
	fmt.Printf("ok chain of %d verified by crypto/x509 Certificate.Verify\n", len(certs))
	return certs, nil
}

func extension(c *x509.Certificate, oid asn1.ObjectIdentifier) (*pkix.Extension, error) {
	return extensionIn(c.Extensions, oid)
}

func extensionIn(exts []pkix.Extension, oid asn1.ObjectIdentifier) (*pkix.Extension, error) {
	var found *pkix.Extension
	for i, e := range exts {
		if !e.Id.Equal(oid) {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("extension %v appears twice", oid)
		}
		if e.Critical {
			return nil, fmt.Errorf("extension %v is critical", oid)
		}
		found = &exts[i]
	}
	return found, nil
}

func verifyCatalyst(files []string, certs []*x509.Certificate) error {
	for i, c := range certs {
		issuer := c
		if i > 0 {
			issuer = certs[i-1]
		}
		if err := verifyAlt(c, issuer); err != nil {
			return fmt.Errorf("%s: %w", files[i], err)
		}
		fmt.Printf("ok %s: Catalyst alternative signature verified by crypto/mldsa over the preTBSCertificate\n", files[i])
	}
	return nil
}

func verifyAlt(c, issuer *x509.Certificate) error {
	pre, err := preTBS(c.RawTBSCertificate, 2, 3)
	if err != nil {
		return err
	}
	return verifyAltExtensions(c.Extensions, pre, issuer)
}

// verifyAltExtensions checks the alternative signature carried by exts
// (a certificate's or a CRL's) over pre with issuer's 2.5.29.72 key.
func verifyAltExtensions(exts []pkix.Extension, pre []byte, issuer *x509.Certificate) error {
	keyExt, err := extension(issuer, oidSubjectAltPublicKeyInfo)
	if err != nil || keyExt == nil {
		return fmt.Errorf("issuer subjectAltPublicKeyInfo: missing or bad (%v)", err)
	}
	pub, err := x509.ParsePKIXPublicKey(keyExt.Value)
	if err != nil {
		return fmt.Errorf("issuer subjectAltPublicKeyInfo: %w", err)
	}
	pk, ok := pub.(*mldsa.PublicKey)
	if !ok {
		return fmt.Errorf("issuer alternative key is %T, not ML-DSA", pub)
	}

	algExt, err := extensionIn(exts, oidAltSignatureAlgorithm)
	if err != nil || algExt == nil {
		return fmt.Errorf("altSignatureAlgorithm: missing or bad (%v)", err)
	}
	var alg pkix.AlgorithmIdentifier
	if rest, err := asn1.Unmarshal(algExt.Value, &alg); err != nil || len(rest) > 0 {
		return fmt.Errorf("altSignatureAlgorithm: not one AlgorithmIdentifier (%v)", err)
	}
	params, ok := mldsaOIDs[alg.Algorithm.String()]
	if !ok || len(alg.Parameters.FullBytes) != 0 {
		return fmt.Errorf("altSignatureAlgorithm %v: not ML-DSA with absent parameters", alg.Algorithm)
	}
	if params != pk.Parameters() {
		return fmt.Errorf("altSignatureAlgorithm %v does not match the issuer's %v key", alg.Algorithm, pk.Parameters())
	}

	sigExt, err := extensionIn(exts, oidAltSignatureValue)
	if err != nil || sigExt == nil {
		return fmt.Errorf("altSignatureValue: missing or bad (%v)", err)
	}
	var sig asn1.BitString
	if rest, err := asn1.Unmarshal(sigExt.Value, &sig); err != nil || len(rest) > 0 || sig.BitLength%8 != 0 {
		return fmt.Errorf("altSignatureValue: not one whole-octet BIT STRING (%v)", err)
	}

	if err := mldsa.Verify(pk, pre, sig.Bytes, nil); err != nil {
		return fmt.Errorf("alternative signature does not verify: %w", err)
	}
	return nil
}

// preTBS drops the signature field (element sigIndex: the third of a
// TBSCertificate, the second of a v2 TBSCertList) and the
// altSignatureValue extension (in the [extTag] field: 3 in a certificate,
// 0 in a CRL) from a DER TBSCertificate or TBSCertList, with
// encoding/asn1 only.
func preTBS(tbs []byte, sigIndex, extTag int) ([]byte, error) {
	var seq asn1.RawValue
	if rest, err := asn1.Unmarshal(tbs, &seq); err != nil || len(rest) > 0 || seq.Tag != asn1.TagSequence {
		return nil, fmt.Errorf("TBS: not one SEQUENCE (%v)", err)
	}
	var out []byte
	body := seq.Bytes
	for i := 0; len(body) > 0; i++ {
		var e asn1.RawValue
		var err error
		if body, err = asn1.Unmarshal(body, &e); err != nil {
			return nil, fmt.Errorf("TBS element %d: %w", i, err)
		}
		switch {
		case i == sigIndex: // signature AlgorithmIdentifier
			continue
		case e.Class == asn1.ClassContextSpecific && e.Tag == extTag:
			exts, err := dropAltSignatureValue(e.Bytes)
			if err != nil {
				return nil, err
			}
			wrapped, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: extTag, IsCompound: true, Bytes: exts})
			if err != nil {
				return nil, err
			}
			out = append(out, wrapped...)
		default:
			out = append(out, e.FullBytes...)
		}
	}
	return asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: out})
}

func dropAltSignatureValue(wrapped []byte) ([]byte, error) {
	var list []struct {
		Raw      asn1.RawContent
		ID       asn1.ObjectIdentifier
		Critical bool `asn1:"optional"`
		Value    []byte
	}
	if rest, err := asn1.Unmarshal(wrapped, &list); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("extensions: %v", err)
	}
	var kept []byte
	dropped := 0
	for _, e := range list {
		if e.ID.Equal(oidAltSignatureValue) {
			dropped++
			continue
		}
		kept = append(kept, e.Raw...)
	}
	if dropped != 1 {
		return nil, fmt.Errorf("found %d altSignatureValue extensions, want 1", dropped)
	}
	return asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: kept})
}

func verifyCRL(issuerFile, crlFile string) error {
	issuer, err := load(issuerFile)
	if err != nil {
		return err
	}
	der, err := os.ReadFile(crlFile)
	if err != nil {
		return err
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return fmt.Errorf("%s: %w", crlFile, err)
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("%s: signature (%v) does not verify: %w", crlFile, rl.SignatureAlgorithm, err)
	}
	fmt.Printf("ok %s: %v CRL signature verified by crypto/x509 (%d entries, number %v)\n", crlFile, rl.SignatureAlgorithm, len(rl.RevokedCertificateEntries), rl.Number)
	algExt, err := extensionIn(rl.Extensions, oidAltSignatureAlgorithm)
	if err != nil {
		return fmt.Errorf("%s: %w", crlFile, err)
	}
	valExt, err := extensionIn(rl.Extensions, oidAltSignatureValue)
	if err != nil {
		return fmt.Errorf("%s: %w", crlFile, err)
	}
	if algExt == nil && valExt == nil {
		return nil
	}
	// TBSCertList ::= SEQUENCE { version, signature, ..., crlExtensions [0] }
	pre, err := preTBS(rl.RawTBSRevocationList, 1, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", crlFile, err)
	}
	if err := verifyAltExtensions(rl.Extensions, pre, issuer); err != nil {
		return fmt.Errorf("%s: %w", crlFile, err)
	}
	fmt.Printf("ok %s: Catalyst alternative signature verified by crypto/mldsa over the preTBSCertList\n", crlFile)
	return nil
}

func reTBS(certFile, issuerFile, seedFile string) error {
	c, err := load(certFile)
	if err != nil {
		return err
	}
	issuer, err := load(issuerFile)
	if err != nil {
		return err
	}
	seed, err := os.ReadFile(seedFile)
	if err != nil {
		return err
	}
	issuerPub, ok := issuer.PublicKey.(*mldsa.PublicKey)
	if !ok {
		return fmt.Errorf("%s: issuer key is %T, not ML-DSA", issuerFile, issuer.PublicKey)
	}
	key, err := mldsa.NewPrivateKey(issuerPub.Parameters(), seed)
	if err != nil {
		return err
	}
	if !key.PublicKey().Equal(issuerPub) {
		return errors.New("the seed does not derive the issuer's ML-DSA public key")
	}
	fmt.Printf("ok %s: FIPS 204 seed derives the issuer's public key in crypto/mldsa\n", seedFile)

	// The parsed certificate is its own template: Go 1.27 re-encodes it.
	der, err := x509.CreateCertificate(rand.Reader, c, issuer, c.PublicKey, key)
	if err != nil {
		return fmt.Errorf("x509.CreateCertificate: %w", err)
	}
	again, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	if !bytes.Equal(again.RawTBSCertificate, c.RawTBSCertificate) {
		return fmt.Errorf("%s: Go 1.27 encodes a different TBSCertificate:\n certenc %x\n go1.27  %x", certFile, c.RawTBSCertificate, again.RawTBSCertificate)
	}
	fmt.Printf("ok %s: TBSCertificate byte-identical to Go 1.27 x509.CreateCertificate (%v)\n", certFile, again.SignatureAlgorithm)
	return nil
}
