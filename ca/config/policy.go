package config

import (
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/policy"
)

// validatePolicyPatterns checks a policy's identity and DNS name patterns
// with the parsers the issuance policy uses, so that what validates is
// exactly what the policy can apply.
func validatePolicyPatterns(key string, td spiffeid.TrustDomain, p PolicyConfig, add func(string, string, ...any)) {
	validateIdentityPatterns(key+".identities", td, p.Identities, add)
	for n, d := range p.DNSNames {
		if err := policy.CheckDNSPattern(d); err != nil {
			add(fmt.Sprintf("%s.dnsNames[%d]", key, n), "%v", err)
		}
	}
}

// validateIdentityPatterns checks SPIFFE ID patterns (a policy's or a
// CertSigner's identities) with the parser that matches them.
func validateIdentityPatterns(key string, td spiffeid.TrustDomain, patterns []string, add func(string, string, ...any)) {
	for n, s := range patterns {
		k := fmt.Sprintf("%s[%d]", key, n)
		pat, err := identity.ParsePattern(s)
		switch {
		case err != nil:
			add(k, "%v", err)
		case !td.IsZero() && pat.TrustDomain() != td:
			add(k, "%s is in trust domain %s; meshca issues only in %s, so it would never match (write spiffe://%s/...)", identity.Quote(s), pat.TrustDomain(), td, td)
		}
	}
}
