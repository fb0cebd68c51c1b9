package policy

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/meshca/meshca/ca/identity"
)

// Rule is a named exception to the strict SPIFFE-only profile, such as a
// gateway that needs DNS names. It applies to the identities its patterns
// match (see identity.Pattern: "*" is one whole path segment, "**" ends a
// pattern and matches one or more segments).
type Rule struct {
	Name            string
	Identities      []identity.Pattern
	DNSNames        []string
	IPRanges        []*net.IPNet
	AllowCommonName bool
	MaxCertTTL      time.Duration
}

// NewRule builds a Rule, parsing its identity patterns, DNS name patterns
// and CIDRs.
func NewRule(name string, identities, dnsNames, ipRanges []string, allowCN bool, maxTTL time.Duration) (*Rule, error) {
	r := &Rule{Name: name, DNSNames: dnsNames, AllowCommonName: allowCN, MaxCertTTL: maxTTL}
	for _, s := range identities {
		p, err := identity.ParsePattern(s)
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", name, err)
		}
		r.Identities = append(r.Identities, p)
	}
	for _, d := range dnsNames {
		if err := CheckDNSPattern(d); err != nil {
			return nil, fmt.Errorf("policy %s: DNS name %w", name, err)
		}
	}
	for _, c := range ipRanges {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return nil, fmt.Errorf("policy %s: %q is not a CIDR", name, c)
		}
		r.IPRanges = append(r.IPRanges, n)
	}
	return r, nil
}

// Matches reports whether the rule applies to id, a valid SPIFFE ID.
func (r *Rule) Matches(u *url.URL) bool {
	id, err := identity.FromURL(u)
	if err != nil {
		return false
	}
	for _, p := range r.Identities {
		if p.Matches(id) {
			return true
		}
	}
	return false
}

// CheckDNSPattern accepts a DNS name, or "*." and a DNS name ("*" is the
// whole left-most label and stands for exactly one label).
func CheckDNSPattern(p string) error {
	rest, wild := strings.CutPrefix(p, "*.")
	if rest == "" || strings.Contains(rest, "*") || (!wild && strings.Contains(p, "*")) {
		return fmt.Errorf("%q: * may only be the whole left-most label, as in *.example.com (exactly one label)", p)
	}
	return nil
}

// allowsDNS reports whether the rule admits DNS name (a CSR SAN or CN). A
// name with a "*" label asks for a wildcard certificate and is never
// admitted, whatever the patterns say.
func (r *Rule) allowsDNS(name string) bool {
	if r == nil || strings.Contains(name, "*") {
		return false
	}
	name = strings.ToLower(name)
	for _, p := range r.DNSNames {
		p = strings.ToLower(p)
		if suffix, ok := strings.CutPrefix(p, "*."); ok {
			label, rest, found := strings.Cut(name, ".")
			if found && label != "" && rest == suffix {
				return true
			}
		} else if name == p {
			return true
		}
	}
	return false
}

func (r *Rule) allowsIP(ip net.IP) bool {
	if r == nil {
		return false
	}
	for _, n := range r.IPRanges {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}
