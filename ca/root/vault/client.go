package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/smallfile"
)

// newAPIClient builds a Vault client from cfg alone: unlike
// vaultapi.DefaultConfig it ignores VAULT_ADDR, VAULT_CACERT and friends,
// never retries on its own (outages must fail fast) and never follows
// redirects.
func newAPIClient(cfg config.VaultConfig) (*vaultapi.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.TLS.ServerName}
	if cfg.TLS.CACert != "" {
		b, err := smallfile.Read(cfg.TLS.CACert, smallfile.MaxSize)
		if err != nil {
			return nil, fmt.Errorf("root.vault.tls.caCert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("root.vault.tls.caCert: %s holds no PEM certificate", cfg.TLS.CACert)
		}
		tlsCfg.RootCAs = pool
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsCfg
	httpClient := &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c, err := vaultapi.NewClient(&vaultapi.Config{
		Address:      cfg.Address,
		HttpClient:   httpClient,
		Timeout:      cfg.RequestTimeout.Duration,
		MaxRetries:   0,
		MinRetryWait: time.Millisecond,
		MaxRetryWait: time.Millisecond,
	})
	if err != nil {
		return nil, fmt.Errorf("root.vault.address: %w", err)
	}
	// NewClient picks up VAULT_TOKEN and VAULT_NAMESPACE; only the
	// configuration counts here (VAULT_TOKEN is read by the token method).
	c.ClearToken()
	c.ClearNamespace()
	if cfg.Namespace != "" {
		c.SetNamespace(cfg.Namespace)
	}
	return c, nil
}

// classify turns a transport failure or a 5xx that means "Vault is not
// serving" into an *UnavailableError and leaves other errors alone.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return err
	}
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case http.StatusServiceUnavailable:
			sealed := strings.Contains(strings.Join(re.Errors, " "), "sealed")
			return &UnavailableError{Op: op, Sealed: sealed, Err: responseError(re)}
		case http.StatusBadGateway, http.StatusGatewayTimeout, http.StatusTooManyRequests:
			return &UnavailableError{Op: op, Err: responseError(re)}
		}
		return fmt.Errorf("vault %s: %w", op, responseError(re))
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return fmt.Errorf("root.vault.tls: Vault's serving certificate does not verify (check tls.caCert and tls.serverName): %w", cve)
	}
	return &UnavailableError{Op: op, Err: err}
}

// apiError is a one-line form of a Vault error response.
type apiError struct {
	Status int
	Method string
	Path   string
	Errors []string
}

func (e *apiError) Error() string {
	var msgs []string
	for _, m := range e.Errors {
		// Vault wraps errors as "2 errors occurred:\n\t* a\n\t* b\n\n".
		for _, line := range strings.Split(m, "\n") {
			line = strings.TrimPrefix(strings.TrimSpace(line), "* ")
			if line != "" && !multiErrorRE.MatchString(line) {
				msgs = append(msgs, line)
			}
		}
	}
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, strings.Join(msgs, "; "))
}

var multiErrorRE = regexp.MustCompile(`^\d+ errors? occurred:$`)

func responseError(re *vaultapi.ResponseError) *apiError {
	path := re.URL
	if i := strings.Index(path, "/v1/"); i >= 0 {
		path = path[i+len("/v1/"):]
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	return &apiError{Status: re.StatusCode, Method: re.HTTPMethod, Path: path, Errors: re.Errors}
}

func statusOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status
	}
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// call runs fn with the current token. When Vault answers 403 (a revoked
// or expired token looks the same as a missing policy) it logs in again
// once and retries; a second 403 is ErrPermissionDenied. Successes and
// outages update the up state.
func (s *Source) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	gen := s.tokenGen.Load()
	err := classify(op, fn(ctx))
	if statusOf(err) == http.StatusForbidden && s.auth.canRelogin() {
		s.log.Info("vault refused the token; logging in again", "op", op)
		if lerr := s.relogin(ctx, gen); lerr != nil {
			return lerr
		}
		err = classify(op, fn(ctx))
	}
	switch {
	case err == nil:
		s.markUp()
	case errors.Is(err, ErrUnavailable):
		s.markDown(err)
	case statusOf(err) == http.StatusForbidden:
		err = fmt.Errorf("%w: %w (the token's policies lack this path; see deploy/examples/vault-policy.hcl)", ErrPermissionDenied, err)
	}
	return err
}

// readRaw GETs a raw (PEM) endpoint; an empty body (204) returns nil.
func (s *Source) readRaw(ctx context.Context, op, path string) ([]byte, error) {
	var body []byte
	err := s.call(ctx, op, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout.Duration)
		defer cancel()
		resp, err := s.api.Logical().ReadRawWithContext(ctx, path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		return err
	})
	return body, err
}

// read GETs a JSON endpoint; a 404 without data returns a nil secret.
func (s *Source) read(ctx context.Context, op, path string) (*vaultapi.Secret, error) {
	var sec *vaultapi.Secret
	err := s.call(ctx, op, func(ctx context.Context) error {
		var err error
		sec, err = s.api.Logical().ReadWithContext(ctx, path)
		return err
	})
	return sec, err
}

// write POSTs data to path.
func (s *Source) write(ctx context.Context, op, path string, data map[string]any) (*vaultapi.Secret, error) {
	var sec *vaultapi.Secret
	err := s.call(ctx, op, func(ctx context.Context) error {
		var err error
		sec, err = s.api.Logical().WriteWithContext(ctx, path, data)
		return err
	})
	return sec, err
}
