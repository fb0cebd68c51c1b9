package config_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
)

func TestDefaults_ValidateClean(t *testing.T) {
	dir := t.TempDir()
	c := config.Defaults(dir)
	require.NoError(t, c.Validate())
	require.Equal(t, config.DefaultTrustDomain, c.TrustDomain)
	require.Equal(t, filepath.Join(dir, config.RootCertFile), c.Root.File.RootCert)
	require.Equal(t, filepath.Join(dir, config.RootKeyFile), c.Root.File.RootKey)
	require.Equal(t, filepath.Join(dir, config.KeysDir), c.KeyStore.Dir)
	require.Equal(t, filepath.Join(dir, config.StoreFile), c.Store.Path)
	require.Equal(t, config.DefaultCertTTL, c.Issuance.DefaultCertTTL.Duration)
	require.Equal(t, config.DefaultMaxCertTTL, c.Issuance.MaxCertTTL.Duration)
	require.Equal(t, keys.ECP256, c.Intermediate.KeyAlgorithm)
	require.Equal(t, config.DefaultRotationThreshold, c.Intermediate.RotationThreshold)
	require.Equal(t, config.DefaultListen, c.Server.Listen)
	require.True(t, c.Root.File.Minted())
}

// minimal is the smallest file that validates: everything else has defaults.
const minimal = `
root:
  file:
    rootCert: /etc/meshca/root-cert.pem
    rootKey: /etc/meshca/root-key.pem
keyStore:
  dir: /var/lib/meshca/keys
store:
  path: /var/lib/meshca/meshca.db
`

func TestParse_MinimalFileGetsDefaultsAndValidates(t *testing.T) {
	c, err := config.Parse([]byte(minimal))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, "softkms", c.KeyStore.Type)
	require.Equal(t, "bolt", c.Store.Type)
	require.Equal(t, config.DefaultRetention, c.Store.Retention.Duration)
	require.Equal(t, "info", c.Log.Level)
	require.Equal(t, "json", c.Log.Format)
	require.Equal(t, config.VerifySignaturesAuto, c.Issuance.VerifySignatures)
}

// intermediate.rotationThreshold is the deprecated name of
// activateThreshold: it sets the activation, and the preparation moves
// before it.
func TestIntermediateThresholds_DefaultsAndAlias(t *testing.T) {
	for name, tc := range map[string]struct {
		yaml              string
		prepare, activate float64
	}{
		"defaults":              {"", 0.5, 0.66},
		"alias after half-way":  {"intermediate: {rotationThreshold: 0.8}", 0.5, 0.8},
		"alias before half-way": {"intermediate: {rotationThreshold: 0.4}", 0.4 * 0.75, 0.4},
		"both new keys":         {"intermediate: {prepareThreshold: 0.2, activateThreshold: 0.3}", 0.2, 0.3},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := config.Parse([]byte(minimal + tc.yaml))
			require.NoError(t, err)
			require.NoError(t, c.Validate())
			require.InDelta(t, tc.prepare, c.Intermediate.PrepareThreshold, 1e-12)
			require.InDelta(t, tc.activate, c.Intermediate.ActivateThreshold, 1e-12)
			require.Equal(t, c.Intermediate.ActivateThreshold, c.Intermediate.RotationThreshold)
		})
	}
}

func TestValidate_EachBadValueNamesItsKey(t *testing.T) {
	tests := map[string]struct {
		yaml string
		key  string
	}{
		"trust domain with a slash":       {"trustDomain: cluster.local/evil", "trustDomain: "},
		"upper-case trust domain":         {"trustDomain: Cluster.Local", "trustDomain: "},
		"rotation threshold above 1":      {"intermediate: {rotationThreshold: 1.5}", "intermediate.rotationThreshold: "},
		"negative rotation threshold":     {"intermediate: {rotationThreshold: -0.1}", "intermediate.rotationThreshold: "},
		"activate threshold of 1":         {"intermediate: {activateThreshold: 1}", "intermediate.activateThreshold: "},
		"prepare after activate":          {"intermediate: {prepareThreshold: 0.7, activateThreshold: 0.6}", "intermediate.prepareThreshold: "},
		"prepare equal to activate":       {"intermediate: {prepareThreshold: 0.6, activateThreshold: 0.6}", "intermediate.prepareThreshold: "},
		"alias differs from activate":     {"intermediate: {rotationThreshold: 0.5, activateThreshold: 0.6}", "intermediate.rotationThreshold: "},
		"unknown key algorithm":           {"intermediate: {keyAlgorithm: DSA-1024}", "intermediate.keyAlgorithm: "},
		"intermediate lifetime too short": {"intermediate: {lifetime: 30m}", "intermediate.lifetime: "},
		"max TTL below default TTL":       {"issuance: {defaultCertTTL: 48h, maxCertTTL: 24h}", "issuance.maxCertTTL: "},
		"default TTL too short":           {"issuance: {defaultCertTTL: 30s}", "issuance.defaultCertTTL: "},
		"bad listen address":              {"server: {listen: '15012'}", "server.listen: "},
		"bad ops listen address":          {"server: {opsListen: 'localhost'}", "server.opsListen: "},
		"pkcs11 without a URI":            {"keyStore: {type: pkcs11}", "keyStore.uri: "},
		"pkcs11 catalyst without a dir for the ML-DSA key": {
			"keyStore: {type: pkcs11, uri: 'pkcs11:token=x', dir: ''}",
			"keyStore.dir: must be set with keyStore.type pkcs11 and intermediate.profile catalyst: HSMs don't offer ML-DSA yet",
		},
		"pkcs11 composite (the CA key would be a file)": {
			"keyStore: {type: pkcs11, uri: 'pkcs11:token=x'}\nintermediate: {profile: composite}\nissuance: {profile: composite}",
			"intermediate.profile: \"composite\" keeps the CA's only key in a file, outside the PKCS#11 token",
		},
		"pkcs11 mldsa (the CA key would be a file)": {
			"keyStore: {type: pkcs11, uri: 'pkcs11:token=x'}\nintermediate: {profile: mldsa}\nissuance: {profile: mldsa}",
			"intermediate.profile: \"mldsa\" keeps the CA's only key in a file",
		},
		"pkcs11 Ed25519": {
			"keyStore: {type: pkcs11, uri: 'pkcs11:token=x'}\nintermediate: {keyAlgorithm: Ed25519}",
			"intermediate.keyAlgorithm: Ed25519 cannot be created in a PKCS#11 token by meshca; use EC-P256, EC-P384 or RSA-3072",
		},
		"unknown key store":               {"keyStore: {type: vault}", "keyStore.type: "},
		"unknown store type":              {"store: {type: sqlite}", "store.type: \"sqlite\" is not supported; use bolt"},
		"prune interval too short":        {"store: {pruneInterval: 10s}", "store.pruneInterval: "},
		"commit delay too long":           {"store: {commitDelay: 50ms}", "store.commitDelay: 50ms is out of range; use 0 (no wait) to 10ms"},
		"negative commit delay":           {"store: {commitDelay: -1ms}", "store.commitDelay: -1ms is out of range"},
		"unknown root source":             {"root: {source: hsm}", "root.source: "},
		"CRL distribution point not http": {"issuance: {crlDistributionPoints: ['ldap://x/crl']}", "issuance.crlDistributionPoints: "},
		"bad log level":                   {"log: {level: verbose}", "log.level: "},
		"unknown signature self-check":    {"issuance: {verifySignatures: never}", `issuance.verifySignatures: "never" is not a choice; use auto`},
		"JWT allowed namespace that is not a namespace name": {
			"authentication: {jwt: {issuer: 'https://idp.example.com', audiences: [meshca], jwksURL: 'https://idp.example.com/jwks', allowedNamespaces: [payments, Bad_NS]}}",
			"authentication.jwt.allowedNamespaces: ",
		},
		"bad log format": {"log: {format: xml}", "log.format: "},
		"bad CIDR in a policy": {
			"issuance: {policies: [{name: gw, identities: ['spiffe://cluster.local/ns/a/sa/b'], ipRanges: ['10.0.0.0/33']}]}",
			"issuance.policies[0].ipRanges: ",
		},
		"non-spiffe identity in a policy": {
			"issuance: {policies: [{name: gw, identities: ['https://cluster.local/ns/a/sa/b']}]}",
			"issuance.policies[0].identities[0]: ",
		},
		"policy without identities": {
			"issuance: {policies: [{name: gw}]}",
			"issuance.policies[0].identities: ",
		},
		"policy name used twice": {
			"issuance: {policies: [{name: gw, identities: ['spiffe://cluster.local/b']}, {name: gw, identities: ['spiffe://cluster.local/c']}]}",
			"issuance.policies[1].name: ",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := config.Parse([]byte(mergeYAML(t, minimal, tc.yaml)))
			require.NoError(t, err)
			err = c.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.key)
			require.Len(t, strings.Split(err.Error(), "\n"), 1, "exactly one problem: %v", err)
		})
	}
}

func TestValidate_RootNeedsExactlyOneMode(t *testing.T) {
	t.Run("cacertsDir and rootCert both set", func(t *testing.T) {
		c := config.Defaults(t.TempDir())
		c.Root.File.CACertsDir = "/etc/cacerts"
		err := c.Validate()
		require.ErrorContains(t, err, "root.file: set either rootCert+rootKey")
		require.False(t, c.Root.File.Minted())
	})
	t.Run("neither set", func(t *testing.T) {
		c := config.Defaults(t.TempDir())
		c.Root.File = config.FileRootConfig{}
		require.ErrorContains(t, c.Validate(), "root.file: set rootCert and rootKey")
	})
	t.Run("cacertsDir alone", func(t *testing.T) {
		c := config.Defaults(t.TempDir())
		c.Root.File = config.FileRootConfig{CACertsDir: "/etc/cacerts"}
		require.NoError(t, c.Validate())
	})
}

func TestValidate_ReportsEveryProblemAtOnce(t *testing.T) {
	c := config.Defaults(t.TempDir())
	c.TrustDomain = "a/b"
	c.Server.Listen = "nope"
	c.Log.Level = "loud"
	err := c.Validate()
	require.Error(t, err)
	for _, key := range []string{"trustDomain: ", "server.listen: ", "log.level: "} {
		require.Contains(t, err.Error(), key)
	}
}

func TestParse_UnknownKeyIsAStrictError(t *testing.T) {
	_, err := config.Parse([]byte(minimal + "issuance:\n  maxCertLifetime: 24h\n"))
	require.ErrorContains(t, err, `unknown field "issuance.maxCertLifetime"`)
}

func TestParse_BadDurationNamesTheKey(t *testing.T) {
	_, err := config.Parse([]byte(minimal + "issuance:\n  defaultCertTTL: soon\n"))
	require.EqualError(t, err, `issuance.defaultCertTTL: "soon" (want a Go duration such as "24h" or "30m", or days such as "90d")`)

	_, err = config.Parse([]byte(mergeYAML(t, minimal, "store: {retention: 3600}")))
	require.EqualError(t, err, `store.retention: 3600 (want a Go duration such as "24h" or "30m", or days such as "90d")`, "a bare number names its key too")
}

// A value of the wrong kind names its key and what it should be, in the
// file's terms; before, Go's struct and type names ("into Go struct field
// LimitsConfig.server.limits.maxConnections of type int") and advice to
// check the key names, which were right.
func TestParse_AValueOfTheWrongKindNamesItsKey(t *testing.T) {
	for yml, want := range map[string]string{
		"server: {limits: {maxConnections: lots}}": "server.limits.maxConnections: a string cannot be a whole number; see deploy/examples/meshca.yaml",
		"trustBundle: {enabled: yes please}":       "trustBundle.enabled: a string cannot be a boolean (true or false); see deploy/examples/meshca.yaml",
		"store: {path: [a, b]}":                    "store.path: a list cannot be a string; see deploy/examples/meshca.yaml",
		"server: {limits: {maxConnections: 1.5}}":  "server.limits.maxConnections: 1.5 is not a whole number in range; see deploy/examples/meshca.yaml",
		"server: {limits: {maxConnections: 1e23}}": "server.limits.maxConnections: 1e+23 is not a whole number in range; see deploy/examples/meshca.yaml",
	} {
		_, err := config.Parse([]byte(mergeYAML(t, minimal, yml)))
		require.EqualError(t, err, want, yml)
	}
}

func TestParse_DaysAreAcceptedAsDurations(t *testing.T) {
	c, err := config.Parse([]byte(minimal + "issuance:\n  maxCertTTL: 90d\n"))
	require.NoError(t, err)
	require.Equal(t, 2160*time.Hour, c.Issuance.MaxCertTTL.Duration)
}

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{
		"90d":   2160 * time.Hour,
		"1d":    24 * time.Hour,
		"0d":    0,
		" 24h ": 24 * time.Hour,
		"90m":   90 * time.Minute,
		"1h30m": 90 * time.Minute,
	}
	for in, want := range good {
		got, err := config.ParseDuration(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "d", "-1d", "1.5d", "d1", "90 days", "soon", "24", "106752d", "4294967295d"} {
		_, err := config.ParseDuration(in)
		require.Error(t, err, "%q must not parse", in)
	}
}

func TestDuration_RoundTripsAsAString(t *testing.T) {
	b, err := json.Marshal(config.Duration{Duration: 36 * time.Hour})
	require.NoError(t, err)
	require.JSONEq(t, `"36h0m0s"`, string(b))
	var d config.Duration
	require.NoError(t, json.Unmarshal(b, &d))
	require.Equal(t, 36*time.Hour, d.Duration)
	require.Error(t, json.Unmarshal([]byte(`3600`), &d), "a bare number is ambiguous and refused")

	require.NoError(t, d.Set("7d"))
	require.Equal(t, 7*24*time.Hour, d.Duration)
	require.Error(t, d.Set("week"))
	require.Equal(t, "duration", d.Type())
}

func TestLoad_ResolvesRelativePathsAgainstTheFileDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "conf", "meshca.yaml")
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(`
root:
  file:
    rootCert: pki/root-cert.pem
    rootKey: /abs/root-key.pem
keyStore:
  dir: ./keys
store:
  path: ../data/meshca.db
`), 0o600))
	c, err := config.Load(path)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "conf", "pki", "root-cert.pem"), c.Root.File.RootCert)
	require.Equal(t, "/abs/root-key.pem", c.Root.File.RootKey)
	require.Equal(t, filepath.Join(dir, "conf", "keys"), c.KeyStore.Dir)
	require.Equal(t, filepath.Join(dir, "data", "meshca.db"), c.Store.Path)
	require.Empty(t, c.Root.File.CACertsDir, "unset paths stay unset")
	require.NoError(t, c.Validate())
}

func TestLoad_ErrorsNameTheFile(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "missing.yaml"))
	require.ErrorContains(t, err, "read config")

	path := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(path, []byte("bogus: 1\n"), 0o600))
	_, err = config.Load(path)
	require.ErrorContains(t, err, "config "+path+": ")
	require.ErrorContains(t, err, `unknown field "bogus"`)
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte("trustDomain: a/b\nintermediate: {rotationThreshold: 1.5}\n"))
	f.Add([]byte("issuance: {maxCertTTL: 90d, policies: [{name: x, identities: ['spiffe://a/*'], ipRanges: ['10.0.0.0/8']}]}"))
	f.Add([]byte("keyStore: {type: pkcs11, uri: 'pkcs11:token=x'}"))
	f.Add([]byte("{"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("issuance: {defaultCertTTL: 99999999999d}"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := config.Parse(b)
		if err != nil {
			require.Nil(t, c)
			return
		}
		_ = c.Validate()
		// Parse fills every default, so no duration can be left at zero.
		require.NotZero(t, c.Issuance.DefaultCertTTL.Duration)
		require.NotZero(t, c.Server.ShutdownTimeout.Duration)
	})
}

// mergeYAML appends extra top-level sections to base; a section that base
// already has (root, keyStore, store) replaces it.
func mergeYAML(t *testing.T, base, extra string) string {
	t.Helper()
	var b, e map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(base), &b))
	require.NoError(t, yaml.Unmarshal([]byte(extra), &e))
	for k, v := range e {
		if bm, ok := b[k].(map[string]any); ok {
			if em, ok := v.(map[string]any); ok {
				for kk, vv := range em {
					bm[kk] = vv
				}
				continue
			}
		}
		b[k] = v
	}
	out, err := yaml.Marshal(b)
	require.NoError(t, err)
	return string(out)
}

func TestParse_KeysAreCaseSensitiveAndUnique(t *testing.T) {
	_, err := config.Parse([]byte("issuance:\n  maxcertttl: 1h\n"))
	require.ErrorContains(t, err, `unknown field "issuance.maxcertttl"`)
	_, err = config.Parse([]byte("trustDomain: a.example\ntrustDomain: b.example\n"))
	require.Error(t, err, "a duplicated key is refused")
}
