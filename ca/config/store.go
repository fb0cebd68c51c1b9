package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Store types (store.type).
const (
	// StoreBolt is the embedded store: one bbolt file, one meshca process.
	StoreBolt = "bolt"
	// StorePostgres is a PostgreSQL database that several replicas share.
	StorePostgres = "postgres"
)

// StorePasswordEnv is the environment variable that holds the PostgreSQL
// password when store.passwordFile is not set.
const StorePasswordEnv = "MESHCA_STORE_PASSWORD"

// StoreConfig selects the record store.
type StoreConfig struct {
	// Type is StoreBolt (the default) or StorePostgres.
	Type string `json:"type"`
	// Path is the bbolt file (bolt only).
	Path string `json:"path"`
	// DSN is the PostgreSQL connection string (postgres only): libpq
	// keyword/value pairs ("host=db port=5432 user=meshca dbname=meshca
	// sslmode=verify-full") or a postgres:// URL, without a password.
	// pgx's pool settings (pool_max_conns=8) are accepted.
	DSN string `json:"dsn,omitempty"`
	// PasswordFile holds the PostgreSQL user's password (postgres only;
	// trailing newlines are ignored). When unset, the password comes from
	// the environment variable MESHCA_STORE_PASSWORD, or none is sent.
	PasswordFile string `json:"passwordFile,omitempty"`
	// Retention is how long a record is kept after its certificate expires.
	Retention Duration `json:"retention"`
	// PruneInterval is how often expired records are pruned.
	PruneInterval Duration `json:"pruneInterval"`
	// CommitDelay is how long a commit of issuance records waits at most
	// for records that are being signed right now, so that they share its
	// fsyncs; it waits only while such records exist. It lowers the CPU
	// per certificate at moderate concurrency and adds up to itself to the
	// latency. nil means DefaultCommitDelay; 0: each group commits at once.
	// bolt only: PostgreSQL groups concurrent commits itself.
	CommitDelay *Duration `json:"commitDelay,omitempty"`
}

// CommitDelayOrDefault is store.commitDelay with its default applied.
func (s StoreConfig) CommitDelayOrDefault() time.Duration {
	if s.CommitDelay == nil {
		return DefaultCommitDelay
	}
	return s.CommitDelay.Duration
}

// Describe names the store for logs and status output: the bbolt file, or
// the PostgreSQL connection string with any password redacted.
func (s StoreConfig) Describe() string {
	if s.Type == StorePostgres {
		return "postgres " + RedactDSN(s.DSN)
	}
	return s.Path
}

// LocalDir is the directory of the files meshca keeps on local disk beside
// its records (pq-anchor.pem): the bbolt file's directory, or with
// PostgreSQL the admin socket's.
func (c *Config) LocalDir() string {
	if c.Store.Type == StorePostgres {
		return filepath.Dir(c.Server.AdminSocket)
	}
	return filepath.Dir(c.Store.Path)
}

func (s *StoreConfig) init() {
	if s.Type == "" {
		s.Type = StoreBolt
	}
	if s.Retention.Duration == 0 {
		s.Retention.Duration = DefaultRetention
	}
	if s.PruneInterval.Duration == 0 {
		s.PruneInterval.Duration = DefaultPruneInterval
	}
}

func (s StoreConfig) validate(add func(key, format string, args ...any)) {
	switch s.Type {
	case StoreBolt:
		if s.Path == "" {
			add("store.path", "must be set: the bbolt file that holds issuance records")
		}
		if s.DSN != "" || s.PasswordFile != "" {
			add("store.dsn", "and store.passwordFile are for store.type postgres; remove them or set store.type: postgres")
		}
	case StorePostgres:
		s.validatePostgres(add)
	default:
		add("store.type", "%q is not supported; use bolt (the embedded store of one meshca process) or postgres (a database that several replicas share)", s.Type)
	}
	if s.Retention.Duration < 0 {
		add("store.retention", "must not be negative")
	}
	if d := s.CommitDelayOrDefault(); d < 0 || d > MaxCommitDelay {
		add("store.commitDelay", "%s is out of range; use 0 (no wait) to %s (default %s): the wait adds to each issuance's latency under load", d, MaxCommitDelay, DefaultCommitDelay)
	}
	if s.PruneInterval.Duration < time.Minute {
		add("store.pruneInterval", "%s is too short; use at least 1m", s.PruneInterval.Duration)
	}
}

func (s StoreConfig) validatePostgres(add func(key, format string, args ...any)) {
	if s.Path != "" {
		add("store.path", "is the bbolt file; with store.type postgres remove it (the records live in the database of store.dsn)")
	}
	if s.CommitDelay != nil {
		add("store.commitDelay", "applies to store.type bolt only; remove it (PostgreSQL groups concurrent commits itself: its commit_delay setting)")
	}
	switch hasPw, err := dsnHasPassword(s.DSN); {
	case strings.TrimSpace(s.DSN) == "":
		add("store.dsn", "must be set for store.type postgres: a libpq connection string such as 'host=db.example port=5432 user=meshca dbname=meshca sslmode=verify-full', or a postgres:// URL")
	case err != nil:
		add("store.dsn", "%v", err)
	case hasPw:
		add("store.dsn", "holds a password; remove it and put the password in the file named by store.passwordFile or in the environment variable %s, so that it stays out of the configuration and the logs", StorePasswordEnv)
	}
}

// dsnKeywordPassword finds a password keyword in a libpq keyword/value
// connection string (PostgreSQL documentation, "Connection Strings").
var dsnKeywordPassword = regexp.MustCompile(`(^|\s)password\s*=`)

// dsnHasPassword reports whether dsn carries a password: in a URL's
// userinfo or password query parameter, or as a password keyword.
func dsnHasPassword(dsn string) (bool, error) {
	if isDSNURL(dsn) {
		u, err := url.Parse(dsn)
		if err != nil {
			// url's error quotes the input, which may hold a password.
			return false, fmt.Errorf("is not a valid postgres:// URL; check its syntax (the value is not repeated here, it may hold a secret)")
		}
		_, pw := u.User.Password()
		return pw || u.Query().Has("password"), nil
	}
	return dsnKeywordPassword.MatchString(dsn), nil
}

func isDSNURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// dsnKeywordPasswordValue matches a password keyword and its value (quoted
// with single quotes and backslash escapes, or bare).
var dsnKeywordPasswordValue = regexp.MustCompile(`(^|\s)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)`)

// RedactDSN returns dsn with any password replaced by "xxxxx", for logs and
// status output.
func RedactDSN(dsn string) string {
	if isDSNURL(dsn) {
		u, err := url.Parse(dsn)
		if err != nil {
			return "(an unparsable postgres:// URL)"
		}
		if u.Query().Has("password") {
			q := u.Query()
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	return dsnKeywordPasswordValue.ReplaceAllString(dsn, "${1}${2}xxxxx")
}
