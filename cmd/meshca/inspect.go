package main

import (
	"github.com/spf13/cobra"

	"github.com/meshca/meshca/ca/inspect"
)

func newInspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE",
		Short: "Summarise a certificate, chain, CSR or CRL (PEM or DER)",
		Long: `inspect prints a readable summary of every certificate, CSR or CRL in FILE:
subject, issuer, serial, validity with the time left, key and signature
algorithms, SANs, usages, CRL entries and any post-quantum extensions
(ITU-T X.509 alternative public key and signature, 2.5.29.72-74).`,
		Example: `  meshca inspect chain.pem
  meshca inspect .meshca/root-cert.pem
  kubectl -n istio-system get secret cacerts -o jsonpath='{.data.ca-crl\.pem}' | base64 -d | meshca inspect -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := readInput(cmd.InOrStdin(), args[0])
			if err != nil {
				return err
			}
			return inspect.Write(cmd.OutOrStdout(), b, inspect.Options{})
		},
	}
}
