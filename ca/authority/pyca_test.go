package authority_test

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/profile"
)

// pycaCatalystScript checks a Catalyst chain that meshca's engine issued
// with pyca/cryptography (its Rust X.509 parser and its bundled OpenSSL's
// ECDSA and ML-DSA). It shares nothing with meshca: it finds the
// extensions through pyca, and computes each preTBSCertificate with the
// small DER walker below (drop the TBS's third element, the signature
// AlgorithmIdentifier, and the 2.5.29.74 extension; re-encode the
// lengths). For each certificate, with its issuer (the root is its own):
//
//   - the classical signature, with verify_directly_issued_by;
//   - .73/.74 present and non-critical, .73 = id-ml-dsa-65 with absent
//     parameters, .72 present exactly on the CA certificates;
//   - the .74 value verified with the issuer's .72 ML-DSA-65 key over the
//     preTBS (empty context), and not over the full TBS nor over a preTBS
//     with one bit flipped.
//
// Input and output are JSON on stdin/stdout; bytes travel as base64.
const pycaCatalystScript = `
import base64, json, sys
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mldsa

ALT_KEY, ALT_ALG, ALT_SIG = "2.5.29.72", "2.5.29.73", "2.5.29.74"
# AlgorithmIdentifier { id-ml-dsa-65 } with absent parameters (RFC 9881).
MLDSA65_ALG = bytes.fromhex("300b0609608648016503040312")
# DER of the OID 2.5.29.74 (tag, length, value).
ALT_SIG_OID = bytes.fromhex("0603551d4a")

def tlv(b, i):
    """One DER element at b[i:]: (tag, content, end). Low tag numbers only."""
    tag = b[i]
    assert tag & 0x1F != 0x1F, "high tag number"
    n = b[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        assert 1 <= k <= 4, "length of length"
        n = int.from_bytes(b[i:i + k], "big")
        i += k
    assert i + n <= len(b), "truncated"
    return tag, b[i:i + n], i + n

def elements(b):
    out, i = [], 0
    while i < len(b):
        tag, content, end = tlv(b, i)
        out.append((tag, content, b[i:end]))
        i = end
    return out

def enc(tag, content):
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    nb = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(nb)]) + nb + content

def pre_tbs(tbs):
    tag, body, end = tlv(tbs, 0)
    assert tag == 0x30 and end == len(tbs), "TBSCertificate is not one SEQUENCE"
    kept, dropped = [], 0
    for idx, (tag, content, whole) in enumerate(elements(body)):
        if idx == 2:
            assert tag == 0x30, "third element is not the signature AlgorithmIdentifier"
            continue
        if tag == 0xA3:
            (seq_tag, exts, _), = elements(content)
            assert seq_tag == 0x30
            keep = []
            for etag, econtent, ewhole in elements(exts):
                if elements(econtent)[0][2] == ALT_SIG_OID:
                    dropped += 1
                    continue
                keep.append(ewhole)
            whole = enc(0xA3, enc(0x30, b"".join(keep)))
        kept.append(whole)
    assert dropped == 1, "found %d altSignatureValue extensions" % dropped
    return enc(0x30, b"".join(kept))

def ext(cert, oid):
    for e in cert.extensions:
        if e.oid.dotted_string == oid:
            assert not e.critical, oid + " is critical"
            return e.value.value
    return None

req = json.load(sys.stdin)
names = ["root", "intermediate", "leaf"]
certs = [x509.load_der_x509_certificate(base64.b64decode(req[n])) for n in names]
checked, pretbs = [], {}
for i, (name, cert) in enumerate(zip(names, certs)):
    issuer = certs[max(i - 1, 0)]
    cert.verify_directly_issued_by(issuer)
    checked.append(name + ": classical signature verified by pyca verify_directly_issued_by")
    is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (ext(cert, ALT_KEY) is not None) == is_ca, name + ": 2.5.29.72 on a CA certificate only"
    assert ext(cert, ALT_ALG) == MLDSA65_ALG, name + ": altSignatureAlgorithm is not id-ml-dsa-65"
    tag, bits, end = tlv(ext(cert, ALT_SIG), 0)
    assert tag == 0x03 and bits[0] == 0 and end == len(ext(cert, ALT_SIG)), name + ": altSignatureValue is not a BIT STRING"
    sig = bits[1:]
    key = serialization.load_der_public_key(ext(issuer, ALT_KEY))
    assert isinstance(key, mldsa.MLDSA65PublicKey), type(key)
    pre = pre_tbs(cert.tbs_certificate_bytes)
    key.verify(sig, pre)
    for wrong in (cert.tbs_certificate_bytes, pre[:-1] + bytes([pre[-1] ^ 1])):
        try:
            key.verify(sig, wrong)
            raise AssertionError(name + ": alternative signature verified over the wrong message")
        except InvalidSignature:
            pass
    checked.append(name + ": ML-DSA-65 alternative signature verified by pyca over the preTBSCertificate")
    pretbs[name] = base64.b64encode(pre).decode()
print(json.dumps({"Checked": checked, "PreTBS": pretbs}))
`

// requirePyca returns the python3 to use, or skips LOUDLY when
// pyca/cryptography >= 45 (which has ML-DSA) is not available.
func requirePyca(t *testing.T) string {
	t.Helper()
	const why = "\n\n" +
		"******************************************************************\n" +
		"*** SKIPPING INDEPENDENT CHECK OF ENGINE OUTPUT BY pyca/cryptography\n" +
		"*** %s\n" +
		"*** Install a Python 3 with cryptography >= 45 (ML-DSA through its \n" +
		"*** bundled OpenSSL), e.g. pip install 'cryptography>=45'.        \n" +
		"******************************************************************\n"
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skipf(why, "python3 is not installed")
	}
	out, err := exec.Command(py, "-c",
		"import cryptography; from cryptography.hazmat.primitives.asymmetric import mldsa; print(cryptography.__version__)").CombinedOutput()
	if err != nil {
		t.Skipf(why, "pyca/cryptography with ML-DSA is not importable: "+string(bytes.TrimSpace(out)))
	}
	version := strings.TrimSpace(string(out))
	major, err := strconv.Atoi(strings.SplitN(version, ".", 2)[0])
	if err != nil || major < 45 {
		t.Skipf(why, "pyca/cryptography "+version+" is older than 45")
	}
	t.Logf("checking with pyca/cryptography %s", version)
	return py
}

func TestSign_CatalystChainVerifiedByPycaCryptography(t *testing.T) {
	py := requirePyca(t)
	c := newProfileCA(t, profile.Catalyst).sign(t, "")
	in, err := json.Marshal(map[string][]byte{"root": c.rootC.Raw, "intermediate": c.inter.Raw, "leaf": c.leaf.Raw})
	require.NoError(t, err)

	cmd := exec.Command(py, "-c", pycaCatalystScript)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "pyca/cryptography rejected meshca's Catalyst chain:\n%s", stderr.String())

	var resp struct {
		Checked []string
		PreTBS  map[string][]byte
	}
	require.NoError(t, json.Unmarshal(out, &resp))
	require.Equal(t, []string{
		"root: classical signature verified by pyca verify_directly_issued_by",
		"root: ML-DSA-65 alternative signature verified by pyca over the preTBSCertificate",
		"intermediate: classical signature verified by pyca verify_directly_issued_by",
		"intermediate: ML-DSA-65 alternative signature verified by pyca over the preTBSCertificate",
		"leaf: classical signature verified by pyca verify_directly_issued_by",
		"leaf: ML-DSA-65 alternative signature verified by pyca over the preTBSCertificate",
	}, resp.Checked)

	// Python's preTBS, computed on its own, is meshca's.
	for name, cert := range map[string]*x509.Certificate{"root": c.rootC, "intermediate": c.inter, "leaf": c.leaf} {
		want, err := certenc.PreTBS(cert.RawTBSCertificate)
		require.NoError(t, err)
		require.Equal(t, want, resp.PreTBS[name], "%s: preTBSCertificate of pyca's DER walker and of ca/certenc", name)
	}
}
