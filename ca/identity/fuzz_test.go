package identity_test

import (
	"strings"
	"testing"

	"github.com/meshca/meshca/ca/identity"
)

// FuzzParse checks that whatever Parse accepts round-trips through its URL
// form unchanged, and that a pattern without wildcards matches exactly the
// ID it spells.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"spiffe://cluster.local/ns/default/sa/app", "spiffe://td", "SPIFFE://td/x", "spiffe://td/a%2Fb",
		"spiffe://td/ns/gw*", "spiffe://td/**", "spiffe://td/*/x", "spiffe://u@td:1/x?q#f", "spiffe://td/./x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := identity.Parse(s)
		if err == nil {
			if len(s) > identity.MaxIDLength || id.String() != s || id.URL().String() != s {
				t.Fatalf("Parse(%q) = %q, URL %q", s, id.String(), id.URL().String())
			}
			if back, err := identity.FromURL(id.URL()); err != nil || back != id {
				t.Fatalf("FromURL(URL(%q)) = %v, %v", s, back, err)
			}
		}
		p, perr := identity.ParsePattern(s)
		if perr != nil {
			return
		}
		if err == nil && !strings.Contains(s, "*") && !p.Matches(id) {
			t.Fatalf("pattern %q does not match itself", s)
		}
		if err != nil && !strings.Contains(s, "*") {
			t.Fatalf("ParsePattern accepts %q, which Parse refuses: %v", s, err)
		}
	})
}
