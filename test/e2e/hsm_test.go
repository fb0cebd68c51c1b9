package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/test/hsmenv"
	"github.com/meshca/meshca/test/httpget"
)

// hsmCA is a meshca directory whose root is in files (made by meshca init)
// and whose key store is a SoftHSM2 token: meshca serve mints the
// intermediate there on its first start.
type hsmCA struct {
	dir string
	hsm *hsmenv.Env
}

// newHSMCA writes DIR/meshca.yaml for keyStore.type pkcs11 with profile p
// and the intermediate key algorithm alg, on a fresh token. SOFTHSM2_CONF
// (set by hsmenv for the test) reaches every meshca child process.
func newHSMCA(t *testing.T, p, alg string) *hsmCA {
	t.Helper()
	hsm := hsmenv.New(t)
	rootDir := filepath.Join(t.TempDir(), "root")
	meshca(t, "init", "--dir", rootDir, "--profile", p)
	dir := filepath.Join(t.TempDir(), "ca")
	require.NoError(t, os.Mkdir(dir, 0o700))
	files := []string{"root-cert.pem", "root-key.pem"}
	pq := ""
	if p == "catalyst" {
		files = append(files, "root-pq-key.pem")
		pq = "    rootPQKey: root-pq-key.pem\n"
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(rootDir, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o600))
	}
	cfg := fmt.Sprintf(`trustDomain: cluster.local
root:
  source: file
  file:
    rootCert: root-cert.pem
    rootKey: root-key.pem
%sintermediate:
  profile: %s
  keyAlgorithm: %s
issuance:
  profile: %s
keyStore:
  type: pkcs11
  uri: %s
  dir: keys
store:
  type: bolt
  path: meshca.db
`, pq, p, alg, p, hsm.URI)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "meshca.yaml"), []byte(cfg), 0o600))
	return &hsmCA{dir: dir, hsm: hsm}
}

// intermediateLabels returns the sorted labels of the token's private keys.
func (c *hsmCA) intermediateLabels(t *testing.T) []string {
	t.Helper()
	labels, err := c.hsm.PrivateKeyLabels()
	require.NoError(t, err)
	sort.Strings(labels)
	return labels
}

// requireInToken checks that the token holds a non-extractable private
// key labelled label that was generated there, and that its public key is
// the certificate's.
func (c *hsmCA) requireInToken(t *testing.T, label string, cert *x509.Certificate) {
	t.Helper()
	priv, err := c.hsm.PrivateKey(label)
	require.NoError(t, err)
	require.True(t, priv.Local, "generated in the token (CKA_LOCAL)")
	require.True(t, priv.Sensitive)
	require.False(t, priv.Extractable)
	require.True(t, priv.NeverExtractable)
	pub, err := c.hsm.PublicKey(label)
	require.NoError(t, err)
	switch k := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		point, err := k.Bytes()
		require.NoError(t, err)
		// CKA_EC_POINT is the DER OCTET STRING of the uncompressed point.
		require.Equal(t, append([]byte{0x04, byte(len(point))}, point...), pub.Public)
	case *rsa.PublicKey:
		require.Equal(t, k.N.Bytes(), pub.Public)
	default:
		t.Fatalf("intermediate key %T", cert.PublicKey)
	}
}

// classicalKeyFiles lists every file under dir that holds a classical
// private key other than the root's: there must be none.
func classicalKeyFiles(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || d.Name() == "root-key.pem" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for rest := b; ; {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			if strings.Contains(blk.Type, "PRIVATE KEY") {
				if _, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil || blk.Type != "PRIVATE KEY" {
					found = append(found, p) // Go parses classical PKCS#8 only
				}
			}
		}
		return nil
	}))
	return found
}

func writePEMFile(t *testing.T, dir, name string, blocks ...[]byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, bytes.Join(blocks, nil), 0o600))
	return p
}

func fetchDER(t *testing.T, url string) []byte {
	t.Helper()
	code, b := httpget.Get(t, url)
	require.Equal(t, http.StatusOK, code, "%s: %s", url, b)
	return []byte(b)
}

// SoftHSM2 end to end: meshca serve, configured with keyStore.type pkcs11,
// mints its intermediate with a key generated inside the token; a leaf
// issued over the Istio endpoint and a CRL after 'meshca revoke' are signed
// by that key, verify with openssl, and the key survives a restart.
func TestHSM_IntermediateKeyInSoftHSM2SignsIstioLeavesAndCRLs(t *testing.T) {
	for _, tc := range []struct{ profile, alg, pqFile string }{
		{"catalyst", "EC-P256", "-ml-dsa-65.key"},
		{"classical", "RSA-3072", ""},
	} {
		t.Run(tc.profile+"/"+tc.alg, func(t *testing.T) {
			ca := newHSMCA(t, tc.profile, tc.alg)
			require.Empty(t, ca.intermediateLabels(t), "a fresh token")
			s := startServe(t, ca.dir)
			s.waitReady(t, 20*time.Second)

			labels := ca.intermediateLabels(t)
			require.Len(t, labels, 1, "serve generated the intermediate's key in the token")
			label := labels[0]
			require.True(t, strings.HasPrefix(label, "intermediate-"), label)
			require.Contains(t, s.logs(), `"key_ref":"pkcs11:id=`+label+`;object=`+label+`"`)
			pin, err := os.ReadFile(ca.hsm.PINFile)
			require.NoError(t, err)
			require.NotContains(t, s.logs(), string(pin), "the PIN never reaches the log")

			// The only key files are the root's and, for catalyst, the
			// intermediate's ML-DSA key (HSMs don't offer ML-DSA yet).
			require.Empty(t, classicalKeyFiles(t, ca.dir))
			keyFiles, _ := filepath.Glob(filepath.Join(ca.dir, "keys", "*"))
			if tc.pqFile == "" {
				require.Empty(t, keyFiles)
			} else {
				require.Equal(t, []string{filepath.Join(ca.dir, "keys", label+tc.pqFile)}, keyFiles)
				fi, err := os.Stat(keyFiles[0])
				require.NoError(t, err)
				require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
			}

			chain := issueOverIstio(t, ca.dir, s)
			leaf, inter := splitPEM(t, chain[0])[0], splitPEM(t, chain[1])[0]
			ca.requireInToken(t, label, inter)
			tmp := t.TempDir()
			leafFile := writePEMFile(t, tmp, "leaf.pem", []byte(chain[0]))
			interFile := writePEMFile(t, tmp, "inter.pem", []byte(chain[1]))
			rootFile := filepath.Join(ca.dir, "root-cert.pem")
			out, err := exec.Command("openssl", "verify", "-x509_strict", "-CAfile", rootFile, "-untrusted", interFile, leafFile).CombinedOutput()
			require.NoError(t, err, string(out))
			require.Equal(t, leafFile+": OK\n", string(out))

			serial := serialOf(leaf)
			meshca(t, "revoke", "--dir", ca.dir, "--serial", serial, "--reason", "keyCompromise")
			waitFor(t, 5*time.Second, "revoked serial on the CRL", func() bool { return lists(s.fetchCRL(t, "gen-1.crl"), serial) })
			crlFile := writePEMFile(t, tmp, "gen-1.crl", fetchDER(t, "http://"+s.ops+"/crl/gen-1.crl"))
			out, err = exec.Command("openssl", "crl", "-inform", "DER", "-in", crlFile, "-CAfile", interFile, "-noout", "-verify").CombinedOutput()
			require.NoError(t, err, string(out))
			require.Equal(t, "verify OK\n", string(out), "the CRL is signed by the intermediate's key in the token")
			crlPEM := writePEMFile(t, tmp, "gen-1.pem", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: mustRead(t, crlFile)}))
			out, err = exec.Command("openssl", "verify", "-crl_check", "-CAfile", rootFile, "-untrusted", interFile, "-CRLfile", crlPEM, leafFile).CombinedOutput()
			require.Error(t, err, string(out))
			require.Contains(t, string(out), "certificate revoked")

			// A restart finds the key in the token by its reference: no
			// new intermediate, and it still signs.
			s.sigterm(t)
			s2 := startServe(t, ca.dir)
			s2.waitReady(t, 20*time.Second)
			require.Equal(t, labels, ca.intermediateLabels(t))
			again := issueOverIstio(t, ca.dir, s2)
			require.Equal(t, chain[1], again[1], "the same intermediate")
			require.NoError(t, splitPEM(t, again[0])[0].CheckSignatureFrom(inter))
		})
	}
}

// issueOverIstio obtains a leaf for workloadID through
// IstioCertificateService/CreateCertificate on s, with a client
// certificate from meshca sign (through s's admin socket).
func issueOverIstio(t *testing.T, dir string, s *server) []string {
	t.Helper()
	csrPath, keyPEM := writeCSRWithKey(t, t.TempDir(), workloadID)
	clientChain := meshca(t, "sign", "--dir", dir, "--csr", csrPath, "--identity", workloadID)
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	chain := callIstioCA(t, s.grpc, "localhost", rootPEM, []byte(clientChain), keyPEM, workloadID)
	require.Len(t, chain, 3, "Istio order: leaf, intermediate, roots")
	return chain
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}

// meshca init --key-store-uri: the development root stays in files, the
// first intermediate's key is generated in the token, meshca.yaml names
// the token (with the PIN file, not the PIN), and the offline meshca sign
// opens the token itself and signs with that key.
func TestHSM_InitWithAKeyStoreURIMintsTheIntermediateInTheToken(t *testing.T) {
	hsm := hsmenv.New(t)
	dir := filepath.Join(t.TempDir(), "ca")
	out := meshca(t, "init", "--dir", dir, "--key-store-uri", hsm.URI)
	require.Contains(t, out, "  intermediate key   in the PKCS#11 token meshca (keyStore.uri)\n")
	require.Contains(t, out, "  ML-DSA key         "+filepath.Join(dir, "keys")+"  (mode 0600; HSMs don't offer ML-DSA yet)\n")
	cfg := string(mustRead(t, filepath.Join(dir, "meshca.yaml")))
	require.Contains(t, cfg, "keyStore:\n  type: pkcs11\n  uri: '"+hsm.URI+"'\n  dir: keys\n")
	pin := string(mustRead(t, hsm.PINFile))
	require.NotContains(t, cfg+out, pin)

	labels, err := hsm.PrivateKeyLabels()
	require.NoError(t, err)
	require.Len(t, labels, 1)
	ca := &hsmCA{dir: dir, hsm: hsm}
	require.Empty(t, classicalKeyFiles(t, dir), "the root key aside, no classical key file")

	chain := signLeaf(t, dir, workloadID)
	ca.requireInToken(t, labels[0], chain[1])
	require.NoError(t, chain[0].CheckSignatureFrom(chain[1]))
}
