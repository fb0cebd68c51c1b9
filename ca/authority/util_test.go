package authority_test

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func pkixExt(id asn1.ObjectIdentifier, critical bool, v []byte) pkix.Extension {
	return pkix.Extension{Id: id, Critical: critical, Value: v}
}

// opensslDSACSR makes a DSA CSR with openssl (Go cannot create DSA keys).
func opensslDSACSR(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	params := filepath.Join(dir, "dsa.params")
	out, err := exec.Command("openssl", "dsaparam", "-out", params, "2048").CombinedOutput()
	require.NoError(t, err, string(out))
	csr := filepath.Join(dir, "dsa.csr")
	out, err = exec.Command("openssl", "req", "-new", "-newkey", "dsa:"+params, "-nodes",
		"-keyout", filepath.Join(dir, "dsa.key"), "-subj", "/",
		"-addext", "subjectAltName=URI:spiffe://cluster.local/ns/default/sa/app", "-out", csr).CombinedOutput()
	require.NoError(t, err, string(out))
	b, err := os.ReadFile(csr)
	require.NoError(t, err)
	return b
}
