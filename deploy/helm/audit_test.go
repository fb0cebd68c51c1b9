package helm_test

import (
	"strings"
	"testing"

	"github.com/meshca/meshca/ca/config"
)

// audit.enabled renders config.audit with the audit file on the data
// volume, which meshca validates; it is off by default.
func TestChart_AuditFileOnTheDataVolume(t *testing.T) {
	cfgOf := func(t *testing.T, extra ...string) *config.Config {
		t.Helper()
		objs, _ := render(t, "meshca", "istio-system", nil, extra...)
		raw, _ := path(one(t, objs, "ConfigMap", "-config"), "data", "meshca.yaml").(string)
		cfg, err := config.Parse([]byte(raw))
		if err != nil {
			t.Fatalf("meshca.yaml does not parse: %v\n%s", err, raw)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("meshca.yaml does not validate: %v\n%s", err, raw)
		}
		return cfg
	}
	if cfg := cfgOf(t); cfg.Audit.Enabled() {
		t.Fatalf("audit file on by default: %+v", cfg.Audit)
	}
	cfg := cfgOf(t, "--set", "audit.enabled=true")
	want := config.AuditConfig{File: "/var/lib/meshca/audit/audit.log", MaxSizeMiB: 32, MaxFiles: 10,
		CheckpointInterval: config.Duration{Duration: 60e9}, FlushInterval: config.Duration{Duration: config.DefaultAuditFlushInterval}}
	if cfg.Audit != want {
		t.Fatalf("config.audit = %+v; want %+v", cfg.Audit, want)
	}
	if !strings.HasPrefix(cfg.Audit.File, "/var/lib/meshca/") {
		t.Fatalf("the audit file %s is not on the data volume", cfg.Audit.File)
	}
}

func TestChart_AuditFileRefusals(t *testing.T) {
	pg := []string{"--set", "audit.enabled=true", "--set", "replicaCount=2", "--set-string", "config.store.type=postgres", "--set-string", "config.store.dsn=host=db dbname=meshca",
		"--set-string", "config.store.passwordFile=/var/run/secrets/meshca/db/password", "--set", "persistence.accessModes={ReadWriteMany}"}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"several replicas": {pg, "audit.enabled with replicaCount 2: the replicas share the data volume"},
		"set twice":        {[]string{"--set", "audit.enabled=true", "--set-string", "config.audit.file=/var/lib/meshca/a.log"}, "audit.enabled and config.audit are both set"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := renderErr(t, "meshca", "istio-system", nil, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want %q", err, tc.want)
			}
		})
	}
}
