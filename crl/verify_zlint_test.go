package crl_test

import (
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

// The CRL lints of zlint v3.6.1 (RFC 5280 and CA/Browser Forum).
var crlLints = []string{"e_cab_crl_has_valid_reason_code", "e_cab_crl_reason_code_not_critical", "e_crl_has_next_update", "e_crl_has_valid_reason_code"}

func lintCRL(t *testing.T, der []byte) map[string]lint.LintStatus {
	t.Helper()
	rl, err := zx509.ParseRevocationList(der)
	require.NoError(t, err)
	got := map[string]lint.LintStatus{}
	for name, r := range zlint.LintRevocationList(rl).Results {
		got[name] = r.Status
	}
	return got
}

func TestBuild_ZLintCRLLints(t *testing.T) {
	at := thisUpdate.Add(-time.Hour)
	// Every reason meshca records (store.ParseReason), and the subset the
	// CA/Browser Forum Baseline Requirements 7.2.2 allow on web-PKI CRLs.
	all := []store.Reason{store.ReasonUnspecified, store.ReasonKeyCompromise, store.ReasonCACompromise, store.ReasonAffiliationChanged,
		store.ReasonSuperseded, store.ReasonCessationOfOperation, store.ReasonPrivilegeWithdrawn, store.ReasonAACompromise}
	cabf := []store.Reason{store.ReasonUnspecified, store.ReasonKeyCompromise, store.ReasonAffiliationChanged,
		store.ReasonSuperseded, store.ReasonCessationOfOperation, store.ReasonPrivilegeWithdrawn}
	entries := func(rs []store.Reason) crl.Entries {
		var es []crl.Entry
		for i, r := range rs {
			es = append(es, crl.Entry{Serial: []byte{byte(i + 1), 0x42}, RevokedAt: at, Reason: r, InvalidityDate: at.Add(-time.Hour)})
		}
		return entriesOf(es...)
	}
	for _, profile := range buildProfiles {
		t.Run(profile, func(t *testing.T) {
			ca := newBuildCA(t, profile)
			build := func(rs []store.Reason, base uint64) []byte {
				der, err := crl.Build(crl.Params{Issuer: ca.cert, Number: 9, BaseNumber: base, ThisUpdate: thisUpdate, NextUpdate: nextUpdate},
					entries(rs), ca.signer())
				require.NoError(t, err)
				return der
			}
			for _, der := range [][]byte{build(cabf, 0), build(cabf, 8)} {
				got := lintCRL(t, der)
				var names []string
				for n := range got {
					names = append(names, n)
				}
				sort.Strings(names)
				require.Equal(t, crlLints, names, "zlint ran its CRL lints")
				for _, n := range crlLints {
					require.Equal(t, lint.Pass, got[n], n)
				}
			}
			// cACompromise and aACompromise are RFC 5280 reasons (the root's
			// CRL lists a compromised intermediate with cACompromise); only
			// the web-PKI rule objects to them.
			got := lintCRL(t, build(all, 0))
			require.Equal(t, map[string]lint.LintStatus{
				"e_cab_crl_has_valid_reason_code": lint.Error, "e_cab_crl_reason_code_not_critical": lint.Pass,
				"e_crl_has_next_update": lint.Pass, "e_crl_has_valid_reason_code": lint.Pass,
			}, got)
		})
	}
}
