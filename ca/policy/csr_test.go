package policy

import (
	"bytes"
	//lint:ignore SA1019 only to build a DSA CSR that meshca must refuse
	"crypto/dsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/caerr"
)

var (
	oidPublicKeyDSA  = asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}
	oidDSAWithSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 2}
	dsaCSROnce       sync.Once
	dsaCSR           []byte
)

// dsaCSRDER builds a genuine, correctly self-signed DSA CSR by hand: Go's
// x509 can parse DSA keys but cannot create DSA CSRs. It carries the
// workload's URI SAN so that only the key type can be at fault.
func dsaCSRDER(t testing.TB) []byte {
	t.Helper()
	dsaCSROnce.Do(func() {
		var params dsa.Parameters
		if err := dsa.GenerateParameters(&params, rand.Reader, dsa.L1024N160); err != nil {
			panic(err)
		}
		priv := &dsa.PrivateKey{PublicKey: dsa.PublicKey{Parameters: params}}
		if err := dsa.GenerateKey(priv, rand.Reader); err != nil {
			panic(err)
		}
		mustMarshal := func(v any, params ...string) []byte {
			var (
				b   []byte
				err error
			)
			if len(params) > 0 {
				b, err = asn1.MarshalWithParams(v, params[0])
			} else {
				b, err = asn1.Marshal(v)
			}
			if err != nil {
				panic(err)
			}
			return b
		}
		san := sanExtension(t, false, "spiffe://cluster.local/ns/default/sa/bookinfo")
		extReq := mustMarshal(struct {
			ID     asn1.ObjectIdentifier
			Values [][]pkix.Extension `asn1:"set"`
		}{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}, [][]pkix.Extension{{san}}})
		yDER := mustMarshal(priv.Y)
		tbs := mustMarshal(struct {
			Version   int
			Subject   asn1.RawValue
			PublicKey struct {
				Algorithm pkix.AlgorithmIdentifier
				Key       asn1.BitString
			}
			Attributes []asn1.RawValue `asn1:"tag:0"`
		}{
			Subject: asn1.RawValue{FullBytes: []byte{0x30, 0x00}},
			PublicKey: struct {
				Algorithm pkix.AlgorithmIdentifier
				Key       asn1.BitString
			}{
				Algorithm: pkix.AlgorithmIdentifier{
					Algorithm:  oidPublicKeyDSA,
					Parameters: asn1.RawValue{FullBytes: mustMarshal(struct{ P, Q, G *big.Int }{params.P, params.Q, params.G})},
				},
				Key: asn1.BitString{Bytes: yDER, BitLength: 8 * len(yDER)},
			},
			Attributes: []asn1.RawValue{{FullBytes: extReq}},
		})
		digest := sha256.Sum256(tbs)
		h := digest[:20] // FIPS 186: truncate to the bit length of q (160)
		r, s, err := dsa.Sign(rand.Reader, priv, h)
		if err != nil {
			panic(err)
		}
		if !dsa.Verify(&priv.PublicKey, h, r, s) {
			panic("the hand-built DSA CSR does not verify with its own key")
		}
		sig := mustMarshal(struct{ R, S *big.Int }{r, s})
		dsaCSR = mustMarshal(struct {
			TBS       asn1.RawValue
			Algorithm pkix.AlgorithmIdentifier
			Signature asn1.BitString
		}{
			TBS:       asn1.RawValue{FullBytes: tbs},
			Algorithm: pkix.AlgorithmIdentifier{Algorithm: oidDSAWithSHA256},
			Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
		})
	})
	return dsaCSR
}

func requireCAErr(t *testing.T, err error, code caerr.Code, reason string) {
	t.Helper()
	require.Error(t, err)
	var ce *caerr.Error
	require.ErrorAs(t, err, &ce, "every policy error must be a *caerr.Error")
	require.Equal(t, code, caerr.CodeOf(err), "code of %q", err)
	require.Equal(t, reason, caerr.ReasonOf(err), "reason of %q", err)
}

func TestParseCSR_AcceptsPEMAndDER(t *testing.T) {
	der := csrDER(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{URIs: urls(workloadID(t))})
	tests := map[string][]byte{
		"DER":                             der,
		"PEM":                             pemCSR(der),
		"PEM with surrounding whitespace": append(append([]byte("\n\t  "), pemCSR(der)...), "\n\n  "...),
		"PEM NEW CERTIFICATE REQUEST":     bytes.ReplaceAll(pemCSR(der), []byte("CERTIFICATE REQUEST"), []byte("NEW CERTIFICATE REQUEST")),
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			csr, err := ParseCSR(in)
			require.NoError(t, err)
			require.Equal(t, der, csr.Raw)
			require.Equal(t, []string{"spiffe://cluster.local/ns/default/sa/bookinfo"}, []string{csr.URIs[0].String()})
		})
	}
}

func TestParseCSR_RejectsMalformedInput(t *testing.T) {
	der := csrDER(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{URIs: urls(workloadID(t))})
	tampered := bytes.Clone(der)
	tampered[len(tampered)-1] ^= 0x01 // last byte of the signature
	tests := map[string]struct {
		in     []byte
		reason string
	}{
		"empty":                    {nil, ReasonCSRMalformed},
		"DER garbage":              {[]byte("this is not a certificate request"), ReasonCSRMalformed},
		"truncated DER":            {der[:len(der)/2], ReasonCSRMalformed},
		"PEM garbage body":         {[]byte("-----BEGIN CERTIFICATE REQUEST-----\n!!!! not base64 !!!!\n-----END CERTIFICATE REQUEST-----\n"), ReasonCSRMalformed},
		"PEM valid base64 garbage": {pemCSR([]byte("definitely not DER")), ReasonCSRMalformed},
		"PEM without END line":     {[]byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n"), ReasonCSRMalformed},
		"PEM of the wrong type":    {bytes.ReplaceAll(pemCSR(der), []byte("CERTIFICATE REQUEST"), []byte("CERTIFICATE")), ReasonCSRMalformed},
		"PEM with trailing text":   {append(pemCSR(der), "trailing garbage\n"...), ReasonCSRMalformed},
		"PEM with a second block":  {append(pemCSR(der), pemCSR(der)...), ReasonCSRMalformed},
		"tampered signature (DER)": {tampered, ReasonCSRSignature},
		"tampered signature (PEM)": {pemCSR(tampered), ReasonCSRSignature},
		"over 64 KiB":              {bytes.Repeat([]byte{'A'}, MaxCSRSize+1), ReasonCSRTooLarge},
		"valid CSR padded past 64 KiB": {
			append(pemCSR(der), bytes.Repeat([]byte{'\n'}, MaxCSRSize)...), ReasonCSRTooLarge,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			csr, err := ParseCSR(tc.in)
			require.Nil(t, csr)
			requireCAErr(t, err, caerr.InvalidArgument, tc.reason)
		})
	}
}

func TestParseCSR_AcceptsExactlyMaxSize(t *testing.T) {
	der := csrDER(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{URIs: urls(workloadID(t))})
	in := append(pemCSR(der), bytes.Repeat([]byte{'\n'}, MaxCSRSize-len(pemCSR(der)))...)
	require.Len(t, in, MaxCSRSize)
	_, err := ParseCSR(in)
	require.NoError(t, err)
}

func TestParseCSR_RejectsDSAKeyAsUnsupported(t *testing.T) {
	der := dsaCSRDER(t)
	// Go parses the DSA key; it is the key type that meshca refuses.
	parsed, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	require.Equal(t, x509.DSA, parsed.PublicKeyAlgorithm)

	_, err = ParseCSR(pemCSR(der))
	requireCAErr(t, err, caerr.InvalidArgument, ReasonKeyType)
}

func TestParseCSR_ErrorsNeverEchoInput(t *testing.T) {
	marker := "SECRET-MARKER-0123456789abcdef"
	inputs := [][]byte{
		[]byte(marker),
		[]byte("-----BEGIN CERTIFICATE REQUEST-----\n" + marker + "\n-----END CERTIFICATE REQUEST-----\n"),
		append(pemCSR(csrDER(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{})), marker...),
		append([]byte(marker), bytes.Repeat([]byte{'x'}, MaxCSRSize)...),
	}
	for _, in := range inputs {
		_, err := ParseCSR(in)
		require.Error(t, err)
		require.NotContains(t, err.Error(), marker)
	}
}

func FuzzParseCSR(f *testing.F) {
	key := ecKey(f, elliptic.P256())
	der := csrDER(f, key, &x509.CertificateRequest{URIs: urls(workloadID(f))})
	f.Add(pemCSR(der))
	f.Add(der)
	f.Add(csrDER(f, edKey(f), &x509.CertificateRequest{DNSNames: []string{"a.example.com"}}))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte("garbage"))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Add(bytes.Repeat([]byte{0x30}, MaxCSRSize+1))
	f.Fuzz(func(t *testing.T, in []byte) {
		csr, err := ParseCSR(in)
		if err != nil {
			require.Nil(t, csr)
			require.Equal(t, caerr.InvalidArgument, caerr.CodeOf(err))
			if len(in) >= 32 {
				require.NotContains(t, err.Error(), string(in))
			}
			return
		}
		require.LessOrEqual(t, len(in), MaxCSRSize)
		require.NoError(t, csr.CheckSignature(), "an accepted CSR must carry a valid self-signature")
	})
}
