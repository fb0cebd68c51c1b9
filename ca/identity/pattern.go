package identity

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Pattern selects SPIFFE IDs by path segment. It is a SPIFFE ID in which a
// whole path segment may be "*" (exactly one segment, whatever it is) and
// the last segment may be "**" (one or more remaining segments):
//
//	spiffe://cluster.local/ns/istio-system/sa/*   every ServiceAccount of istio-system
//	spiffe://cluster.local/ns/*/sa/ingress        ServiceAccount ingress of every namespace
//	spiffe://cluster.local/gateways/**            everything below /gateways
//
// A "*" inside a segment (gw*, *gw, g*w) is refused: matching is never by
// string prefix, so spiffe://td/ns/gw cannot be stretched to ns/gw-evil.
type Pattern struct {
	text string
	td   spiffeid.TrustDomain
	segs []string // "*" is a wildcard segment; "**" is not stored
	tail bool     // the pattern ended in "**"
}

// ParsePattern parses an identity pattern. Its errors say how to fix it.
func ParsePattern(s string) (Pattern, error) {
	if len(s) > MaxIDLength {
		return Pattern{}, fmt.Errorf("%s is %d bytes; a SPIFFE ID has at most %d", Quote(s), len(s), MaxIDLength)
	}
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return Pattern{}, fmt.Errorf("%s is not a SPIFFE ID pattern: it must start with spiffe:// (lower case)", Quote(s))
	}
	tdName, path, _ := strings.Cut(rest, "/")
	if strings.Contains(tdName, "*") {
		return Pattern{}, fmt.Errorf("%s has a wildcard in the trust domain; patterns match within one trust domain, name it exactly", Quote(s))
	}
	td, err := TrustDomain(tdName)
	if err != nil {
		return Pattern{}, fmt.Errorf("%s: %v", Quote(s), err)
	}
	if path == "" {
		return Pattern{}, fmt.Errorf("%s has no path, and a workload's ID always has one; write %s to match every workload of the trust domain", Quote(s), td.IDString()+"/**")
	}
	p := Pattern{text: s, td: td}
	parts := strings.Split(path, "/")
	for i, seg := range parts {
		switch {
		case seg == "**" && i == len(parts)-1:
			p.tail = true
			continue
		case seg == "**":
			return Pattern{}, fmt.Errorf("%s has ** before its last segment; ** matches the rest of a path and may only end a pattern", Quote(s))
		case seg == "*":
		case strings.Contains(seg, "*"):
			return Pattern{}, fmt.Errorf("%s has %q: * must be a whole path segment (matching exactly one segment) and never part of one; write the segment out in full, list each ID, or use /* for any one segment", Quote(s), seg)
		default:
			if err := spiffeid.ValidatePathSegment(seg); err != nil {
				return Pattern{}, fmt.Errorf("%s has path segment %q: %v (SPIFFE-ID §2.2)", Quote(s), seg, err)
			}
		}
		p.segs = append(p.segs, seg)
	}
	return p, nil
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.text }

// TrustDomain is the trust domain the pattern matches in.
func (p Pattern) TrustDomain() spiffeid.TrustDomain { return p.td }

// Matches reports whether id matches the pattern, segment by segment.
func (p Pattern) Matches(id spiffeid.ID) bool {
	if id.IsZero() || !id.MemberOf(p.td) || id.Path() == "" {
		return false
	}
	segs := strings.Split(id.Path()[1:], "/")
	if p.tail {
		if len(segs) <= len(p.segs) {
			return false
		}
	} else if len(segs) != len(p.segs) {
		return false
	}
	for i, want := range p.segs {
		if want != "*" && want != segs[i] {
			return false
		}
	}
	return true
}
