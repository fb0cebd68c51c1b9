package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation"
)

// fakeRotations records the calls that reach it.
type fakeRotations struct {
	mu     sync.Mutex
	starts []StartRootRotation
	ops    []string
	err    error
}

func (f *fakeRotations) RotationInfo(context.Context) RotationInfo {
	return RotationInfo{Rotations: []rotation.Status{{CA: rotation.CARoot, Phase: "idle"}}}
}

func (f *fakeRotations) StartRootRotation(_ context.Context, req StartRootRotation) (RotationInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return RotationInfo{}, f.err
	}
	f.starts = append(f.starts, req)
	return RotationInfo{Rotations: []rotation.Status{{CA: rotation.CARoot, Phase: "publish-both-roots", PhaseCode: 1}}}, nil
}

func (f *fakeRotations) RootRotationOp(_ context.Context, op, by string) (RotationInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, op+" by "+by)
	return RotationInfo{}, f.err
}

func (f *fakeRotations) RotateIntermediate(_ context.Context, signer, by string) (IntermediateRotation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, "intermediate "+signer+" by "+by)
	return IntermediateRotation{Generation: 4}, f.err
}

// lockedBuffer is a log sink safe to read while the server writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func serveRotations(t *testing.T, f Rotations, logs *lockedBuffer) *Client {
	t.Helper()
	sock := filepath.Join(shortDir(t), "admin.sock")
	log := slog.New(slog.NewJSONHandler(logs, nil))
	s, err := Listen(Options{Socket: sock, Records: &records{}, Rotations: f, Log: log})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	c := NewClient(sock)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRotation_StartCarriesTheNewRootAndTheWaits(t *testing.T) {
	f := &fakeRotations{}
	var logs lockedBuffer
	c := serveRotations(t, f, &logs)
	ctx := context.Background()
	info, err := c.StartRootRotation(ctx, RootRotationRequest{NewRootCert: "/b/root-cert.pem", NewRootKey: "/b/root-key.pem", NewRootPQKey: "/b/pq.pem", WorkloadsMaxWait: "6h"})
	require.NoError(t, err)
	require.Equal(t, "publish-both-roots", info.Rotations[0].Phase)
	require.Len(t, f.starts, 1)
	require.Equal(t, config.RootConfig{Source: "file", File: config.FileRootConfig{RootCert: "/b/root-cert.pem", RootKey: "/b/root-key.pem", RootPQKey: "/b/pq.pem"}}, f.starts[0].NewRoot)
	require.Equal(t, store.RootRotationWaits{WorkloadsMax: 6 * time.Hour}, f.starts[0].Waits)
	require.True(t, strings.HasPrefix(f.starts[0].By, "cli:"), f.starts[0].By)

	vault := &config.RootConfig{Source: "vault", Vault: config.VaultConfig{Address: "https://vault:8200", Mount: "pki-b"}}
	_, err = c.StartRootRotation(ctx, RootRotationRequest{NewRoot: vault})
	require.NoError(t, err)
	require.Equal(t, *vault, f.starts[1].NewRoot)

	for _, op := range []string{RootOpPause, RootOpResume, RootOpAdvance} {
		_, err := c.RootRotationOp(ctx, op)
		require.NoError(t, err)
	}
	_, err = c.RotateIntermediate(ctx, "")
	require.NoError(t, err)
	_, err = c.RotateIntermediate(ctx, "gateways")
	require.NoError(t, err)
	require.Len(t, f.ops, 5)
	require.True(t, strings.HasPrefix(f.ops[0], "pause by cli:"))
	require.True(t, strings.HasPrefix(f.ops[3], "intermediate  by cli:"))
	require.True(t, strings.HasPrefix(f.ops[4], "intermediate gateways by cli:"))
	// A client from before --signer sends no body: the default intermediate.
	resp, err := c.send(ctx, http.MethodPost, pathRotationIntermediate, nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, f.ops, 6)
	require.True(t, strings.HasPrefix(f.ops[5], "intermediate  by "), f.ops[5])
	// Every call is audited with its action.
	require.Eventually(t, func() bool { return strings.Count(logs.String(), `"action":"rotate rotations"`) == 8 }, 5*time.Second, time.Millisecond, "every call is audited")
}

// Bad input is a 400 that says what is wrong and never reaches the
// controller.
func TestRotation_BadInputIs400AndChangesNothing(t *testing.T) {
	f := &fakeRotations{}
	var logs lockedBuffer
	c := serveRotations(t, f, &logs)
	ctx := context.Background()
	for name, tc := range map[string]struct {
		req RootRotationRequest
		msg string
	}{
		"nothing":    {RootRotationRequest{}, "name the new root"},
		"no key":     {RootRotationRequest{NewRootCert: "/b/c.pem"}, "name the new root"},
		"both kinds": {RootRotationRequest{NewRootCert: "/b/c.pem", NewRootKey: "/b/k.pem", NewRoot: &config.RootConfig{Source: "file"}}, "not both"},
		"bad wait":   {RootRotationRequest{NewRootCert: "/b/c.pem", NewRootKey: "/b/k.pem", TTLMaxWait: "soon"}, "--ttl-max-wait"},
		"zero wait":  {RootRotationRequest{NewRootCert: "/b/c.pem", NewRootKey: "/b/k.pem", WorkloadsMinWait: "0s"}, "--workloads-min-wait"},
	} {
		_, err := c.StartRootRotation(ctx, tc.req)
		var se *StatusError
		require.True(t, errors.As(err, &se), "%s: %v", name, err)
		require.Equal(t, http.StatusBadRequest, se.Code, name)
		require.Contains(t, se.Message, tc.msg, name)
	}
	resp, err := c.send(ctx, http.MethodPost, pathRotationRoot, []byte(`{"newRootCert":"/x","surprise":1}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	resp, err = c.send(ctx, http.MethodPost, pathRotationRoot+"/explode", []byte(`{}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Empty(t, f.starts)
	require.Empty(t, f.ops)

	// The controller's own refusals keep their code.
	f.err = caerr.New(caerr.InvalidArgument, "invalid_new_root", "the new root (file /b/c.pem) is already a root in force")
	_, err = c.StartRootRotation(ctx, RootRotationRequest{NewRootCert: "/b/c.pem", NewRootKey: "/b/k.pem"})
	var se *StatusError
	require.True(t, errors.As(err, &se))
	require.Equal(t, http.StatusBadRequest, se.Code)
	f.err = caerr.New(caerr.FailedPrecondition, "root_rotation_in_progress", "in progress")
	_, err = c.RootRotationOp(ctx, RootOpAdvance)
	require.True(t, errors.As(err, &se))
	require.Equal(t, http.StatusConflict, se.Code)
}

// Only reading the rotation state is served on the TCP listener.
func TestRotation_ChangesAreSocketOnly(t *testing.T) {
	h := &handler{rotations: &fakeRotations{}, log: slog.New(slog.DiscardHandler), audit: audit.New(slog.New(slog.DiscardHandler))}
	for _, tc := range []struct {
		method, path string
		local, tcp   int
	}{
		{http.MethodGet, pathRotation, http.StatusOK, http.StatusOK},
		{http.MethodPost, pathRotationRoot, http.StatusBadRequest, http.StatusNotFound},
		{http.MethodPost, pathRotationRoot + "/pause", http.StatusOK, http.StatusNotFound},
		{http.MethodPost, pathRotationIntermediate, http.StatusOK, http.StatusNotFound},
	} {
		for local, want := range map[bool]int{true: tc.local, false: tc.tcp} {
			rec := httptest.NewRecorder()
			h.routes(allowAll{}, local).ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader("{}")))
			require.Equal(t, want, rec.Code, "%s %s local=%v", tc.method, tc.path, local)
		}
	}
}

// The journal as the API shows it names B's source without its
// authentication settings.
func TestRotation_JournalShowsNoAuthSettings(t *testing.T) {
	rc := config.RootConfig{Source: "vault", Vault: config.VaultConfig{Address: "https://vault:8200", Mount: "pki-b", IssuerRef: "next",
		Auth: config.VaultAuthConfig{Method: "approle", RoleID: "role-id-1234", SecretIDFile: "/run/secret-id"}}}
	b, err := json.Marshal(rc)
	require.NoError(t, err)
	j := JournalOf(store.RootRotation{ID: "r", Phase: "done", NewRootSource: b})
	require.Equal(t, "vault https://vault:8200 mount pki-b issuer next", j.NewRootSource)
	out, err := json.Marshal(j)
	require.NoError(t, err)
	require.NotContains(t, string(out), "role-id-1234")
	require.NotContains(t, string(out), "secret-id")
}

// The server reads the new root's files from its own working directory:
// a relative path is a 400 that names the field, and never reaches the
// controller. Key store URIs (pkcs11:...) are not paths.
func TestRotation_RelativePathsAre400(t *testing.T) {
	f := &fakeRotations{}
	var logs lockedBuffer
	c := serveRotations(t, f, &logs)
	ctx := context.Background()
	vault := func(mod func(*config.VaultConfig)) *config.RootConfig {
		rc := &config.RootConfig{Source: config.RootSourceVault, Vault: config.VaultConfig{Address: "https://vault:8200", Mount: "pki"}}
		mod(&rc.Vault)
		return rc
	}
	for name, tc := range map[string]struct {
		req RootRotationRequest
		msg string
	}{
		"cert":         {RootRotationRequest{NewRootCert: "b/c.pem", NewRootKey: "/b/k.pem"}, `--new-root-cert "b/c.pem" is a relative path`},
		"key":          {RootRotationRequest{NewRootCert: "/b/c.pem", NewRootKey: "./k.pem"}, `--new-root-key "./k.pem" is a relative path`},
		"softkms key":  {RootRotationRequest{NewRootCert: "/b/c.pem", NewRootKey: "softkms:k.pem"}, `--new-root-key "softkms:k.pem" is a relative path`},
		"pq key":       {RootRotationRequest{NewRootCert: "/b/c.pem", NewRootKey: "/b/k.pem", NewRootPQKey: "pq.pem"}, `--new-root-pq-key "pq.pem" is a relative path`},
		"section cert": {RootRotationRequest{NewRoot: &config.RootConfig{Source: "file", File: config.FileRootConfig{RootCert: "c.pem", RootKey: "/k.pem"}}}, `root.file.rootCert "c.pem" is a relative path`},
		"vault ca":     {RootRotationRequest{NewRoot: vault(func(v *config.VaultConfig) { v.TLS.CACert = "ca.pem" })}, `root.vault.tls.caCert "ca.pem" is a relative path`},
		"vault token":  {RootRotationRequest{NewRoot: vault(func(v *config.VaultConfig) { v.Auth.TokenFile = "tok" })}, `root.vault.auth.tokenFile "tok" is a relative path`},
	} {
		_, err := c.StartRootRotation(ctx, tc.req)
		var se *StatusError
		require.True(t, errors.As(err, &se), "%s: %v", name, err)
		require.Equal(t, http.StatusBadRequest, se.Code, name)
		require.Equal(t, tc.msg+": name it by its absolute path (meshca serve reads it, not the caller)", se.Message, name)
	}
	require.Empty(t, f.starts)

	// Absolute paths and key store URIs pass.
	_, err := c.StartRootRotation(ctx, RootRotationRequest{NewRootCert: "/b/c.pem", NewRootKey: "pkcs11:id=b;object=b"})
	require.NoError(t, err)
	require.Len(t, f.starts, 1)
}
