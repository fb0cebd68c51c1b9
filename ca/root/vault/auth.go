package vault

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/smallfile"
)

// authenticator obtains a Vault token. Secrets are read from their files
// at every login and never kept, logged or put in errors.
type authenticator interface {
	method() string
	// login returns a token and, for login methods, the login response.
	login(ctx context.Context, c *vaultapi.Client) (string, *vaultapi.Secret, error)
	// canRelogin reports whether a new login may yield a different token.
	canRelogin() bool
}

func newAuthenticator(a config.VaultAuthConfig, getenv func(string) string) (authenticator, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	switch a.Method {
	case config.VaultAuthToken:
		return &tokenAuth{file: a.TokenFile, getenv: getenv}, nil
	case config.VaultAuthAppRole:
		return &approleAuth{mount: a.Mount, roleID: a.RoleID, roleIDFile: a.RoleIDFile, secretIDFile: a.SecretIDFile}, nil
	case config.VaultAuthKubernetes:
		return &kubernetesAuth{mount: a.Mount, role: a.Role, jwtFile: a.ServiceAccountTokenFile}, nil
	}
	return nil, fmt.Errorf("root.vault.auth.method: %q is not supported; use token, approle or kubernetes", a.Method)
}

// readSecretFile reads a one-line secret, naming the key (never the value)
// in errors.
func readSecretFile(key, path string) (string, error) {
	b, err := smallfile.Read(path, smallfile.MaxSize)
	if err != nil {
		return "", fmt.Errorf("root.vault.auth.%s: %w", key, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("root.vault.auth.%s: %s is empty", key, path)
	}
	return v, nil
}

type tokenAuth struct {
	file   string
	getenv func(string) string
}

func (t *tokenAuth) method() string   { return config.VaultAuthToken }
func (t *tokenAuth) canRelogin() bool { return t.file != "" }

func (t *tokenAuth) login(context.Context, *vaultapi.Client) (string, *vaultapi.Secret, error) {
	if t.file != "" {
		tok, err := readSecretFile("tokenFile", t.file)
		return tok, nil, err
	}
	if tok := strings.TrimSpace(t.getenv(vaultapi.EnvVaultToken)); tok != "" {
		return tok, nil, nil
	}
	return "", nil, errors.New("root.vault.auth: method token needs tokenFile or the VAULT_TOKEN environment variable")
}

type approleAuth struct {
	mount, roleID, roleIDFile, secretIDFile string
}

func (a *approleAuth) method() string   { return config.VaultAuthAppRole }
func (a *approleAuth) canRelogin() bool { return true }

func (a *approleAuth) login(ctx context.Context, c *vaultapi.Client) (string, *vaultapi.Secret, error) {
	roleID := a.roleID
	if a.roleIDFile != "" {
		var err error
		if roleID, err = readSecretFile("roleIDFile", a.roleIDFile); err != nil {
			return "", nil, err
		}
	}
	secretID, err := readSecretFile("secretIDFile", a.secretIDFile)
	if err != nil {
		return "", nil, err
	}
	return loginWith(ctx, c, a.mount, map[string]any{"role_id": roleID, "secret_id": secretID})
}

type kubernetesAuth struct {
	mount, role, jwtFile string
}

func (k *kubernetesAuth) method() string   { return config.VaultAuthKubernetes }
func (k *kubernetesAuth) canRelogin() bool { return true }

func (k *kubernetesAuth) login(ctx context.Context, c *vaultapi.Client) (string, *vaultapi.Secret, error) {
	jwt, err := readSecretFile("serviceAccountTokenFile", k.jwtFile)
	if err != nil {
		return "", nil, err
	}
	return loginWith(ctx, c, k.mount, map[string]any{"role": k.role, "jwt": jwt})
}

// loginWith writes body to auth/<mount>/login with no token attached.
func loginWith(ctx context.Context, c *vaultapi.Client, mount string, body map[string]any) (string, *vaultapi.Secret, error) {
	anon, err := c.CloneWithHeaders()
	if err != nil {
		return "", nil, err
	}
	anon.ClearToken()
	path := "auth/" + mount + "/login"
	sec, err := anon.Logical().WriteWithContext(ctx, path, body)
	if err != nil {
		return "", nil, classify("login", err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return "", nil, fmt.Errorf("vault login: %s returned no token (is %s an auth method mount?)", path, mount)
	}
	return sec.Auth.ClientToken, sec, nil
}

// tokenLease is what meshca knows about its current token's lifetime.
type tokenLease struct {
	ttl       time.Duration // as of obtained; 0 means it never expires
	increment time.Duration // the TTL to ask for at each renewal
	renewable bool
	obtained  time.Time
	nearMax   bool // the last renewal came back short: log in next time
}

// login obtains a fresh token and learns its lease.
func (s *Source) login(ctx context.Context) error {
	s.loginMu.Lock()
	defer s.loginMu.Unlock()
	return s.loginLocked(ctx)
}

// relogin logs in again unless another caller already did since seenGen.
func (s *Source) relogin(ctx context.Context, seenGen uint64) error {
	s.loginMu.Lock()
	defer s.loginMu.Unlock()
	if s.tokenGen.Load() != seenGen {
		return nil
	}
	return s.loginLocked(ctx)
}

func (s *Source) loginLocked(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			s.authErr.Store(&err)
			if errors.Is(err, ErrUnavailable) {
				s.markDown(err)
			}
		}
	}()
	lctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout.Duration)
	defer cancel()
	tok, sec, err := s.auth.login(lctx, s.api)
	if err != nil {
		return s.loginError(err)
	}
	s.api.SetToken(tok)
	if sec == nil { // a given token: ask Vault what it is
		sec, err = s.api.Auth().Token().LookupSelfWithContext(lctx)
		if err = classify("token lookup-self", err); err != nil {
			if statusOf(err) == 403 {
				return fmt.Errorf("root.vault.auth: Vault refused the configured token (invalid, expired or revoked, or its policies lack auth/token/lookup-self from the default policy): %w", err)
			}
			return err
		}
	}
	ttl, _ := sec.TokenTTL()
	renewable, _ := sec.TokenIsRenewable()
	s.lease.Store(&tokenLease{ttl: ttl, increment: ttl, renewable: renewable, obtained: s.now()})
	s.tokenGen.Add(1)
	s.logins.Add(1)
	s.authErr.Store(nil)
	s.markUp()
	pol, _ := sec.TokenPolicies()
	s.log.Info("logged in to vault", "auth_method", s.auth.method(), "policies", pol, "ttl", ttl, "renewable", renewable)
	return nil
}

func (s *Source) loginError(err error) error {
	var ae *apiError
	if errors.Is(err, ErrUnavailable) || !errors.As(err, &ae) {
		return err // already names its key, or is an outage
	}
	switch ae.Status {
	case 400, 403:
		return fmt.Errorf("root.vault.auth: %s login at auth/%s/login was refused (check auth.mount, the role and its credentials): %w", s.auth.method(), s.cfg.Auth.Mount, err)
	case 404:
		return fmt.Errorf("root.vault.auth.mount: no auth method is mounted at %q: %w", s.cfg.Auth.Mount, err)
	}
	return fmt.Errorf("root.vault.auth: %w", err)
}

// RunTokenRenewal renews the token's lease when two thirds of it have
// passed, and logs in again when it cannot be renewed (not renewable,
// revoked, or at its max TTL). Failures are retried with backoff. It
// returns when ctx ends.
func (s *Source) RunTokenRenewal(ctx context.Context) {
	var retry wait.DelayFunc // non-nil while renewals fail
	var d time.Duration
	attempt := 0
	for {
		if retry == nil {
			d = s.renewDelay()
		}
		if s.sleep(ctx, d) != nil {
			return
		}
		if err := s.renewOrLogin(ctx); err != nil {
			if retry == nil {
				retry = s.retryBackoff().DelayFunc()
			}
			d = retry()
			attempt++
			s.log.Warn("vault token renewal failed; retrying", "error", err, "attempt", attempt, "retry_in", d)
			continue
		}
		retry, attempt = nil, 0
	}
}

func (s *Source) renewDelay() time.Duration {
	l := s.lease.Load()
	if l == nil || l.ttl <= 0 {
		return s.cfg.HealthInterval.Duration // nothing expires; look again later
	}
	return max(l.obtained.Add(l.ttl*2/3).Sub(s.now()), 0)
}

// renewOrLogin renews the token's lease, or logs in again.
func (s *Source) renewOrLogin(ctx context.Context) error {
	l := s.lease.Load()
	if l == nil || l.ttl <= 0 {
		return nil
	}
	gen := s.tokenGen.Load()
	if l.renewable && !l.nearMax {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout.Duration)
		sec, err := s.api.Auth().Token().RenewSelfWithContext(rctx, int(l.increment.Seconds()))
		cancel()
		err = classify("token renew-self", err)
		if err == nil {
			ttl, _ := sec.TokenTTL()
			renewable, _ := sec.TokenIsRenewable()
			s.lease.Store(&tokenLease{ttl: ttl, increment: l.increment, renewable: renewable,
				obtained: s.now(), nearMax: ttl < l.increment/2})
			s.renewals.Add(1)
			s.markUp()
			return nil
		}
		if errors.Is(err, ErrUnavailable) {
			s.markDown(err)
			return err
		}
		s.log.Info("vault token could not be renewed; logging in again", "error", err)
	}
	if !s.auth.canRelogin() {
		return fmt.Errorf("the Vault token expires in %s and cannot be renewed; with method token and VAULT_TOKEN meshca cannot log in again (use tokenFile, approle or kubernetes)",
			max(l.obtained.Add(l.ttl).Sub(s.now()), 0))
	}
	return s.relogin(ctx, gen)
}
