package certenc

import (
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// FuzzPreTBS feeds arbitrary bytes to preTBS, which parses DER as a
// verifier meets it (peer chains, Bouncy Castle artifacts). It must never
// panic, and whatever it accepts must come out as one DER SEQUENCE,
// shorter than the input, whose extensions no longer hold
// altSignatureValue.
func FuzzPreTBS(f *testing.F) {
	ch := buildCatalystChain(f)
	for _, der := range [][]byte{ch.root, ch.intermediate, ch.leaf} {
		f.Add(parse(f, der).RawTBSCertificate)
	}
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, tbs []byte) {
		pre, err := preTBS(tbs)
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
				if oid, err := extensionOID(ext); err == nil && oid.Equal(OIDAltSignatureValue) {
					t.Fatal("preTBS still carries altSignatureValue")
				}
			}
		}
	})
}
