package pqc

import (
	"bytes"
	"crypto"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/ca/pqc/mldsa"
	"github.com/stretchr/testify/require"
)

// pycaScript verifies, with pyca/cryptography (OpenSSL's ML-DSA), what
// meshca produced: pure ML-DSA signatures with and without context, the
// seed-only PKCS#8 keys, a self-signed ML-DSA certificate, and composite
// signatures whose M' it recomputes from the draft on its own. It then
// signs with a key of its own for meshca to check. []byte travels as
// base64 (encoding/json's default).
const pycaScript = `
import base64, hashlib, json, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa

d, e = base64.b64decode, lambda b: base64.b64encode(b).decode()
req, checked = json.load(sys.stdin), []
for k in req["MLDSA"]:
    pub = serialization.load_der_public_key(d(k["SPKI"]))
    pub.verify(d(k["Sig"]), d(k["Msg"]))
    pub.verify(d(k["SigCtx"]), d(k["Msg"]), d(k["Ctx"]))
    priv = serialization.load_der_private_key(d(k["PKCS8"]), None)
    assert priv.public_key().public_bytes_raw() == pub.public_bytes_raw(), k["Name"]
    checked.append(k["Name"])
for c in req["Certs"]:
    cert = x509.load_der_x509_certificate(d(c))
    cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes)
    checked.append("cert " + cert.subject.rfc4514_string())
sizes = {"MLDSA44": (1312, 2420, mldsa.MLDSA44PublicKey), "MLDSA65": (1952, 3309, mldsa.MLDSA65PublicKey)}
for k in req["Composite"]:
    name, pk, sig, msg, ctx = k["Name"], d(k["PK"]), d(k["Sig"]), d(k["Msg"]), d(k["Ctx"])
    pk_len, sig_len, cls = sizes[name.split("-")[0]]
    ph = {"SHA256": hashlib.sha256, "SHA512": hashlib.sha512}[name.split("-")[-1]]
    label = ("COMPSIG-" + name).encode()
    m = b"CompositeAlgorithmSignatures2025" + label + bytes([len(ctx)]) + ctx + ph(msg).digest()
    cls.from_public_bytes(pk[:pk_len]).verify(sig[:sig_len], m, label)
    point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pk[pk_len:])
    point.verify(sig[sig_len:], m, ec.ECDSA(hashes.SHA256()))
    checked.append(name)
sk, msg = mldsa.MLDSA65PrivateKey.generate(), b"signed by pyca/cryptography"
pkcs8 = sk.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
print(json.dumps({"Checked": checked, "PKCS8": e(pkcs8), "Msg": e(msg), "Sig": e(sk.sign(msg)), "SigCtx": e(sk.sign(msg, b"py"))}))
`

// requirePyca returns the python3 to use, or skips loudly when
// pyca/cryptography >= 45 with ML-DSA is not available.
func requirePyca(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("SKIPPED independent check: python3 is not installed, so pyca/cryptography cannot cross-verify ML-DSA")
	}
	out, err := exec.Command(py, "-c",
		"import cryptography; from cryptography.hazmat.primitives.asymmetric import mldsa; print(cryptography.__version__)").CombinedOutput()
	if err != nil {
		t.Skipf("SKIPPED independent check: pyca/cryptography with ML-DSA is not importable: %s", bytes.TrimSpace(out))
	}
	version := strings.TrimSpace(string(out))
	major, err := strconv.Atoi(strings.SplitN(version, ".", 2)[0])
	if err != nil || major < 45 {
		t.Skipf("SKIPPED independent check: pyca/cryptography %s is older than 45", version)
	}
	t.Logf("cross-checking with pyca/cryptography %s", version)
	return py
}

type pycaMLDSA struct {
	Name                               string
	SPKI, PKCS8, Msg, Ctx, Sig, SigCtx []byte
}

type pycaComposite struct {
	Name              string
	PK, Msg, Ctx, Sig []byte
}

func TestPyca_CrossVerifiesMLDSAAndCompositeBothWays(t *testing.T) {
	py := requirePyca(t)
	var req struct {
		MLDSA     []pycaMLDSA
		Composite []pycaComposite
		Certs     [][]byte
	}
	var want []string
	msg, ctx := []byte("signed by meshca"), []byte("meshca-context")
	for _, p := range mldsa.ParameterSets() {
		sk, err := mldsa.GenerateKey(p, nil)
		require.NoError(t, err)
		spki, err := mldsa.MarshalPKIXPublicKey(sk.PublicKey())
		require.NoError(t, err)
		pkcs8, err := mldsa.MarshalPKCS8PrivateKey(sk)
		require.NoError(t, err)
		sig, err := sk.Sign(nil, msg, crypto.Hash(0))
		require.NoError(t, err)
		sigCtx, err := sk.SignWithContext(msg, ctx)
		require.NoError(t, err)
		req.MLDSA = append(req.MLDSA, pycaMLDSA{p.Name(), spki, pkcs8, msg, ctx, sig, sigCtx})
		want = append(want, p.Name())
	}
	root := issueTestCert(t, certOpts{cn: "pyca root", key: newMLDSA(t, mldsa.MLDSA65), ca: true})
	req.Certs = append(req.Certs, root.cert.Raw)
	want = append(want, "cert CN=pyca root")
	for _, alg := range []*composite.Algorithm{composite.MLDSA44ECDSAP256SHA256, composite.MLDSA65ECDSAP256SHA512} {
		sk, err := composite.GenerateKey(alg, nil)
		require.NoError(t, err)
		sig, err := sk.SignWithContext(nil, msg, ctx)
		require.NoError(t, err)
		req.Composite = append(req.Composite, pycaComposite{alg.Name(), sk.PublicKey().Bytes(), msg, ctx, sig})
		want = append(want, alg.Name())
	}
	in, err := json.Marshal(req)
	require.NoError(t, err)

	cmd := exec.Command(py, "-c", pycaScript)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "pyca/cryptography rejected meshca's output:\n%s", stderr.String())

	var resp struct {
		Checked                 []string
		PKCS8, Msg, Sig, SigCtx []byte
	}
	require.NoError(t, json.Unmarshal(out, &resp))
	require.Equal(t, want, resp.Checked)

	// And the other way: pyca's seed-only key and signatures in meshca.
	sk, err := mldsa.ParsePKCS8PrivateKey(resp.PKCS8)
	require.NoError(t, err)
	require.Same(t, mldsa.MLDSA65, sk.ParameterSet())
	require.Len(t, sk.Seed(), mldsa.SeedSize, "pyca writes seed-only PKCS#8")
	require.NoError(t, sk.PublicKey().Verify(resp.Msg, resp.Sig))
	require.NoError(t, sk.PublicKey().VerifyWithContext(resp.Msg, []byte("py"), resp.SigCtx))
}
