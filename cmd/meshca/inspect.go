package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshca/meshca/ca/inspect"
	"github.com/meshca/meshca/ca/root"
)

func newInspectCommand() *cobra.Command {
	var tlsAddr, serverName, rootsFile string
	cmd := &cobra.Command{
		Use:   "inspect FILE | --tls HOST:PORT",
		Short: "Summarise a certificate, chain, CSR or CRL (PEM or DER), or a TLS endpoint",
		Long: `inspect prints a readable summary of every certificate, CSR or CRL in FILE:
subject, issuer, serial, validity with the time left, key and signature
algorithms, SANs, usages, CRL entries and the post-quantum view of each
certificate: its profile (classical, Catalyst hybrid, composite or pure
ML-DSA), its ML-DSA or composite key and signature, and its ITU-T X.509
alternative public key and signature (2.5.29.72-74) by algorithm name.

With --tls HOST:PORT it connects to a TLS endpoint (a meshca signing port, an
Istio control plane) and prints the negotiated TLS version, cipher suite and
key-exchange group (X25519MLKEM768, 0x11EC, is the post-quantum hybrid that
meshca's endpoints prefer), then the peer's certificate chain. The chain is
verified only when --roots is given.`,
		Example: `  meshca inspect chain.pem
  meshca inspect .meshca/root-cert.pem
  meshca inspect --tls 127.0.0.1:15012 --server-name meshca.istio-system.svc --roots .meshca/root-cert.pem
  kubectl -n istio-system get secret cacerts -o jsonpath='{.data.ca-crl\.pem}' | base64 -d | meshca inspect -`,
		Args: func(cmd *cobra.Command, args []string) error {
			if tlsAddr != "" {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := inspect.Options{Describer: inspect.PostQuantum}
			if tlsAddr != "" {
				return inspectTLS(cmd.OutOrStdout(), tlsAddr, serverName, rootsFile, opts)
			}
			b, err := readInput(cmd.InOrStdin(), args[0])
			if err != nil {
				return err
			}
			return inspect.Write(cmd.OutOrStdout(), b, opts)
		},
	}
	cmd.Flags().StringVar(&tlsAddr, "tls", "", "connect to this TLS endpoint (HOST:PORT) and print the negotiated parameters and the peer chain")
	cmd.Flags().StringVar(&serverName, "server-name", "", "with --tls: the SNI and name to verify (default: the host of --tls)")
	cmd.Flags().StringVar(&rootsFile, "roots", "", "with --tls: PEM roots to verify the peer chain against (default: not verified)")
	return cmd
}

// hybridGroups are the post-quantum hybrid key exchanges (ML-KEM).
var hybridGroups = map[tls.CurveID]bool{tls.X25519MLKEM768: true, tls.SecP256r1MLKEM768: true, tls.SecP384r1MLKEM1024: true}

func inspectTLS(w io.Writer, addr, serverName, rootsFile string, opts inspect.Options) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--tls %q: want HOST:PORT", addr)
	}
	if serverName == "" {
		serverName = host
	}
	cfg := &tls.Config{ServerName: serverName, NextProtos: []string{"h2"}, InsecureSkipVerify: rootsFile == ""}
	if rootsFile != "" {
		roots, err := root.ReadCertificates(rootsFile)
		if err != nil {
			return fmt.Errorf("--roots %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		for _, r := range roots {
			cfg.RootCAs.AddCert(r)
		}
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	defer conn.Close()
	cs := conn.ConnectionState()
	group := fmt.Sprintf("%s (0x%04X)", cs.CurveID, uint16(cs.CurveID))
	if hybridGroups[cs.CurveID] {
		group += ", post-quantum hybrid key exchange"
	} else if cs.CurveID != 0 {
		group += ", classical key exchange (not post-quantum)"
	}
	p := func(k, f string, a ...any) { fmt.Fprintf(w, "    %-22s %s\n", k+":", fmt.Sprintf(f, a...)) }
	fmt.Fprintf(w, "TLS connection to %s\n", addr)
	p("Version", "%s", tls.VersionName(cs.Version))
	p("Cipher suite", "%s", tls.CipherSuiteName(cs.CipherSuite))
	p("Key exchange group", "%s", group)
	if cs.NegotiatedProtocol != "" {
		p("ALPN", "%s", cs.NegotiatedProtocol)
	}
	p("Server name", "%s", serverName)
	if rootsFile != "" {
		p("Peer chain", "verified against %s", rootsFile)
	} else {
		p("Peer chain", "NOT verified (give --roots to verify it)")
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the peer sent no certificate")
	}
	fmt.Fprintf(w, "\nPeer certificate chain (%d):\n", len(cs.PeerCertificates))
	return inspect.Write(w, root.EncodePEM(cs.PeerCertificates...), opts)
}
