// Package tlsconfig owns the TLS side of meshca's endpoints: the compliance
// modes Istio clients use (the COMPLIANCE_POLICY values default, pqc and
// fips-140-2 of Istio's pilot-agent and istiod, see
// https://istio.io/latest/docs/reference/commands/pilot-agent/), client
// certificates requested but optional, and a serving certificate that meshca
// issues to itself and renews in the background before it ages or when the
// CA rotates.
package tlsconfig

import (
	"crypto/tls"
	"fmt"
	"slices"
)

// Mode is a compliance mode, named as Istio's COMPLIANCE_POLICY values.
type Mode string

// The compliance modes.
const (
	// Default: TLS 1.2+, X25519MLKEM768 preferred.
	Default Mode = "default"
	// PQC: TLS 1.3 only, AES-GCM only, X25519MLKEM768 as the only key exchange.
	PQC Mode = "pqc"
	// FIPS1402: TLS 1.2 only, the four ECDHE-AES-GCM suites, P-256.
	FIPS1402 Mode = "fips-140-2"
)

// Modes lists the valid modes.
var Modes = []Mode{Default, PQC, FIPS1402}

// ParseMode validates s ("" means Default).
func ParseMode(s string) (Mode, error) {
	if s == "" {
		return Default, nil
	}
	if slices.Contains(Modes, Mode(s)) {
		return Mode(s), nil
	}
	return "", fmt.Errorf("compliance mode %q is not one of %v", s, Modes)
}

var fipsSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
}

// Server returns a server tls.Config for mode. Client certificates are
// requested but not required, and are verified by the authenticator (so
// that a stale certificate can fall through to token authentication, as in
// istiod).
func Server(mode Mode, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) (*tls.Config, error) {
	c := &tls.Config{
		GetCertificate: getCert,
		ClientAuth:     tls.RequestClientCert,
		NextProtos:     []string{"h2"},
	}
	switch mode {
	case Default, "":
		c.MinVersion = tls.VersionTLS12
		c.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384}
	case PQC:
		c.MinVersion, c.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
		c.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768}
		// Go does not let TLS 1.3 suites be configured; refuse ChaCha20 here.
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			switch cs.CipherSuite {
			case tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384:
				return nil
			}
			return fmt.Errorf("compliance mode pqc allows only AES-GCM, not %s", tls.CipherSuiteName(cs.CipherSuite))
		}
	case FIPS1402:
		c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		c.CipherSuites = fipsSuites
		c.CurvePreferences = []tls.CurveID{tls.CurveP256}
	default:
		return nil, fmt.Errorf("unknown compliance mode %q", mode)
	}
	return c, nil
}
