package policy

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Rule is a named exception to the strict SPIFFE-only profile, such as a
// gateway that needs DNS names. It applies to the identities it lists.
type Rule struct {
	Name            string
	Identities      []string
	DNSNames        []string
	IPRanges        []*net.IPNet
	AllowCommonName bool
	MaxCertTTL      time.Duration
}

// NewRule builds a Rule, parsing its CIDRs.
func NewRule(name string, identities, dnsNames, ipRanges []string, allowCN bool, maxTTL time.Duration) (*Rule, error) {
	r := &Rule{Name: name, Identities: identities, DNSNames: dnsNames, AllowCommonName: allowCN, MaxCertTTL: maxTTL}
	for _, c := range ipRanges {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return nil, fmt.Errorf("policy %s: %q is not a CIDR", name, c)
		}
		r.IPRanges = append(r.IPRanges, n)
	}
	return r, nil
}

// Matches reports whether the rule applies to id.
func (r *Rule) Matches(id *url.URL) bool {
	s := id.String()
	for _, p := range r.Identities {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(s, prefix) {
				return true
			}
		} else if s == p {
			return true
		}
	}
	return false
}

func (r *Rule) allowsDNS(name string) bool {
	if r == nil {
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
