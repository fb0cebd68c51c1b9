package certenc

import (
	"bytes"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/meshca/meshca/ca/oid"
)

// FuzzPreTBS feeds arbitrary bytes to PreTBS, which parses DER as a
// verifier meets it (peer chains, Bouncy Castle artifacts). It must never
// panic, and whatever it accepts must come out as one DER SEQUENCE,
// shorter than the input (the signature field is always dropped), whose
// extensions no longer hold altSignatureValue.
func FuzzPreTBS(f *testing.F) {
	ch := buildCatalystChain(f)
	for _, der := range [][]byte{ch.root, ch.intermediate, ch.leaf} {
		f.Add(parse(f, der).RawTBSCertificate)
	}
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, tbs []byte) {
		pre, err := PreTBS(tbs)
		if err != nil {
			return
		}
		if len(pre) >= len(tbs) {
			t.Fatalf("preTBS (%d bytes) is not shorter than the TBS (%d bytes)", len(pre), len(tbs))
		}
		in := cryptobyte.String(pre)
		var body cryptobyte.String
		if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !in.Empty() {
			t.Fatal("preTBS is not one DER SEQUENCE")
		}
		for !body.Empty() {
			var elem cryptobyte.String
			var tag cbasn1.Tag
			if !body.ReadAnyASN1(&elem, &tag) {
				t.Fatal("preTBS element does not parse")
			}
			if tag != cbasn1.Tag(3).Constructed().ContextSpecific() {
				continue
			}
			var list cryptobyte.String
			if !elem.ReadASN1(&list, cbasn1.SEQUENCE) {
				t.Fatal("preTBS extensions do not parse")
			}
			for !list.Empty() {
				var ext cryptobyte.String
				if !list.ReadASN1Element(&ext, cbasn1.SEQUENCE) {
					t.Fatal("preTBS extension does not parse")
				}
				if id, err := extensionOID(ext); err == nil && id.Equal(oid.AltSignatureValue) {
					t.Fatal("preTBS still carries altSignatureValue")
				}
			}
		}
	})
}

// FuzzParseCertificate feeds arbitrary bytes to ParseCertificate, the
// parser every post-quantum verifier runs on certificates from peers. It
// must never panic, and what it accepts must split losslessly: the TBS
// elements concatenate back to the TBS body, and the signature field is
// the certificate's signatureAlgorithm.
func FuzzParseCertificate(f *testing.F) {
	ch := buildCatalystChain(f)
	for _, der := range [][]byte{ch.root, ch.intermediate, ch.leaf, buildMLDSAChain(f).root} {
		f.Add(der)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		c, err := ParseCertificate(der)
		if err != nil {
			return
		}
		var body []byte
		for _, e := range c.TBS.Elements {
			body = append(body, e...)
		}
		in := cryptobyte.String(c.RawTBS)
		var want cryptobyte.String
		if !in.ReadASN1(&want, cbasn1.SEQUENCE) || !bytes.Equal(want, body) {
			t.Fatal("TBS elements do not concatenate to the TBS body")
		}
		if c.TBS.ExtensionsIndex >= 0 && c.TBS.ExtensionsIndex != len(c.TBS.Elements)-1 {
			t.Fatal("extensions are not the last TBS element")
		}
		if len(c.SignatureAlgorithm) == 0 {
			t.Fatal("accepted a certificate without a signature algorithm")
		}
	})
}
