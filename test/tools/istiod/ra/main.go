// Command istiod-ra is istiod's own Kubernetes RA (istio.io/istio
// security/pkg/pki/ra KubernetesRA, what istiod runs with
// EXTERNAL_CA=ISTIOD_RA_KUBERNETES_API), driven once: it signs one
// workload CSR through the CertificateSigningRequest API of the cluster in
// -kubeconfig exactly as istiod does (create, approve, wait up to 60 s,
// delete; then SignWithCertChain's root handling) and prints the chain
// istiod would answer with, as JSON: {"chain": [...]} with each element as
// istiod's CA server returns it (security/pkg/server/ca CreateCertificate:
// every certificate of the RA's chain alone, then caCertFile as the last
// element). meshca's e2e tests use it to check that meshca's CSR signer
// satisfies istiod's RA.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	pkica "istio.io/istio/security/pkg/pki/ca"
	"istio.io/istio/security/pkg/pki/ra"
	"istio.io/istio/security/pkg/pki/util"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of istiod's ServiceAccount")
	signer := flag.String("signer", "", "K8S_SIGNER")
	caCertFile := flag.String("ca-cert-file", "", "istiod's caCertFile (/etc/external-ca-cert/root-cert.pem)")
	csrFile := flag.String("csr", "", "the workload's PEM CSR")
	id := flag.String("identity", "", "the workload's SPIFFE ID (istiod authenticated it)")
	ttl := flag.Duration("ttl", time.Hour, "requested TTL")
	version := flag.Bool("version", false, "print the istio.io/istio version and exit")
	flag.Parse()
	if *version {
		fmt.Println("istiod-ra", istioVersion())
		return
	}
	if err := run(*kubeconfig, *signer, *caCertFile, *csrFile, *id, *ttl); err != nil {
		fmt.Fprintln(os.Stderr, "istiod-ra:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, signer, caCertFile, csrFile, id string, ttl time.Duration) error {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	csr, err := os.ReadFile(csrFile)
	if err != nil {
		return err
	}
	r, err := ra.NewIstioRA(&ra.IstioRAOptions{
		ExternalCAType: ra.ExtCAK8s, DefaultCertTTL: 24 * time.Hour, MaxCertTTL: 90 * 24 * time.Hour,
		CaSigner: signer, CaCertFile: caCertFile, VerifyAppendCA: true, K8sClient: cs, TrustDomain: "cluster.local",
	})
	if err != nil {
		return err
	}
	chain, err := r.SignWithCertChain(csr, pkica.CertOpts{SubjectIDs: []string{id}, TTL: ttl, ForCA: false})
	if err != nil {
		return err
	}
	// As istiod's CA server answers (security/pkg/server/ca/server.go).
	var out []string
	for _, pem := range chain {
		for _, c := range util.PemCertBytestoString([]byte(pem)) {
			out = append(out, c+"\n")
		}
	}
	if root := r.GetCAKeyCertBundle().GetRootCertPem(); len(root) != 0 {
		out = append(out, string(root))
	}
	return json.NewEncoder(os.Stdout).Encode(map[string][]string{"chain": out})
}

// istioVersion is the version of istio.io/istio this binary was built from.
func istioVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "istio.io/istio" {
				return "istio.io/istio " + d.Version
			}
		}
	}
	return "istio.io/istio (unknown version)"
}
