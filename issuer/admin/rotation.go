package admin

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/config"
	cakeys "github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation"
)

// The rotation routes. Reading is served on every listener; starting,
// pausing, resuming and advancing a rotation only on the local socket:
// a root rotation names files that the server reads, which only someone
// beside it can mean.
const (
	pathRotation             = "/v1/rotation"
	pathRotationRoot         = "/v1/rotation/root"
	pathRotationIntermediate = "/v1/rotation/intermediate"
)

// The rotation actions.
var (
	ActGetRotation = Action{"get", "rotations"}
	// ActRotate changes which roots or intermediate meshca uses (socket only).
	ActRotate = Action{"rotate", "rotations"}
)

// Root rotation operations (POST /v1/rotation/root/{op}).
const (
	RootOpPause   = "pause"
	RootOpResume  = "resume"
	RootOpAdvance = "advance"
)

// RootRotationRequest is the body of POST /v1/rotation/root: the new root
// as files the server reads (NewRootCert, NewRootKey and, for a Catalyst
// root, NewRootPQKey), or as a root section (NewRoot, from a file with a
// root: section). The waits are Go durations; empty means meshca's default.
type RootRotationRequest struct {
	NewRootCert  string             `json:"newRootCert,omitempty"`
	NewRootKey   string             `json:"newRootKey,omitempty"`
	NewRootPQKey string             `json:"newRootPQKey,omitempty"`
	NewRoot      *config.RootConfig `json:"newRoot,omitempty"`
	// WorkloadsMinWait and WorkloadsMaxWait bound phase 2; TTLMaxWait
	// bounds phase 4.
	WorkloadsMinWait string `json:"workloadsMinWait,omitempty"`
	WorkloadsMaxWait string `json:"workloadsMaxWait,omitempty"`
	TTLMaxWait       string `json:"ttlMaxWait,omitempty"`
}

// StartRootRotation is a checked RootRotationRequest.
type StartRootRotation struct {
	NewRoot config.RootConfig
	Waits   store.RootRotationWaits
	// By is the authenticated requester.
	By string
}

// Check turns the request into a StartRootRotation, or says what is wrong.
func (r RootRotationRequest) Check() (StartRootRotation, error) {
	var out StartRootRotation
	files := r.NewRootCert != "" || r.NewRootKey != "" || r.NewRootPQKey != ""
	switch {
	case files && r.NewRoot != nil:
		return out, fmt.Errorf("name the new root either as files (--new-root-cert, --new-root-key) or as a root section (--new-root-config), not both")
	case r.NewRoot != nil:
		out.NewRoot = *r.NewRoot
	case r.NewRootCert == "" || r.NewRootKey == "":
		return out, fmt.Errorf("name the new root: --new-root-cert and --new-root-key (and --new-root-pq-key for a Catalyst root), or --new-root-config")
	default:
		out.NewRoot = config.RootConfig{Source: config.RootSourceFile, File: config.FileRootConfig{RootCert: r.NewRootCert, RootKey: r.NewRootKey, RootPQKey: r.NewRootPQKey}}
	}
	if err := checkAbsolute(r, out.NewRoot); err != nil {
		return out, err
	}
	for _, w := range []struct {
		flag string
		in   string
		out  *time.Duration
	}{{"--workloads-min-wait", r.WorkloadsMinWait, &out.Waits.WorkloadsMin}, {"--workloads-max-wait", r.WorkloadsMaxWait, &out.Waits.WorkloadsMax}, {"--ttl-max-wait", r.TTLMaxWait, &out.Waits.TTLMax}} {
		if w.in == "" {
			continue
		}
		d, err := time.ParseDuration(w.in)
		if err != nil || d <= 0 {
			return out, fmt.Errorf("%s %q: use a positive Go duration such as 30m or 12h", w.flag, w.in)
		}
		*w.out = d
	}
	return out, nil
}

// checkAbsolute refuses a relative path among the new root's files: the
// server reads them from its own working directory, not the caller's. A
// key reference into a key store (pkcs11:...) is no path.
func checkAbsolute(r RootRotationRequest, rc config.RootConfig) error {
	type named struct{ name, path string }
	var paths []named
	if r.NewRoot == nil {
		paths = []named{{"--new-root-cert", r.NewRootCert}, {"--new-root-key", r.NewRootKey}, {"--new-root-pq-key", r.NewRootPQKey}}
	} else {
		v := rc.Vault
		paths = []named{{"root.file.rootCert", rc.File.RootCert}, {"root.file.rootKey", rc.File.RootKey}, {"root.file.rootPQKey", rc.File.RootPQKey},
			{"root.file.cacertsDir", rc.File.CACertsDir}, {"root.vault.tls.caCert", v.TLS.CACert}, {"root.vault.auth.tokenFile", v.Auth.TokenFile},
			{"root.vault.auth.roleIDFile", v.Auth.RoleIDFile}, {"root.vault.auth.secretIDFile", v.Auth.SecretIDFile},
			{"root.vault.auth.serviceAccountTokenFile", v.Auth.ServiceAccountTokenFile}}
	}
	for _, p := range paths {
		if p.path == "" {
			continue
		}
		if f, ok := cakeys.FilePath(p.path); ok && !filepath.IsAbs(f) {
			return fmt.Errorf("%s %q is a relative path: name it by its absolute path (meshca serve reads it, not the caller)", p.name, p.path)
		}
	}
	return nil
}

// RotationInfo is the answer of every rotation route: the state of each
// rotating controller and the journal of the last root rotation.
type RotationInfo struct {
	Rotations []rotation.Status `json:"rotations"`
	// Root is the last root rotation's journal; nil when none was started.
	Root *RootRotationJournal `json:"root,omitempty"`
}

// RootRotationJournal is a root rotation's record for people: no key
// material (there is none in it), the roots by subject and fingerprint.
type RootRotationJournal struct {
	ID       string   `json:"id"`
	Phase    string   `json:"phase"`
	Paused   bool     `json:"paused,omitempty"`
	OldRoots []string `json:"oldRoots"`
	NewRoot  string   `json:"newRoot"`
	// NewRootSource says where B is: its certificate file, or its Vault
	// address, mount and issuer; never authentication settings.
	NewRootSource  string                    `json:"newRootSource,omitempty"`
	StartedAt      time.Time                 `json:"startedAt"`
	PhaseStartedAt time.Time                 `json:"phaseStartedAt"`
	Waits          store.RootRotationWaits   `json:"waits"`
	History        []store.RootRotationEvent `json:"history,omitempty"`
}

// IntermediateRotationRequest is the body of POST /v1/rotation/intermediate.
type IntermediateRotationRequest struct {
	// Signer names a signer with its own intermediate
	// (authentication.certSigners); empty: the default intermediate.
	Signer string `json:"signer,omitempty"`
}

// IntermediateRotation is the answer of POST /v1/rotation/intermediate.
type IntermediateRotation struct {
	Generation uint64    `json:"generation"`
	Subject    string    `json:"subject"`
	NotAfter   time.Time `json:"notAfter"`
	Issuer     string    `json:"issuer"`
}

// Rotations serves the rotation routes: the running rotation controllers.
// Errors carry a caerr code (InvalidArgument for bad input,
// FailedPrecondition when the state forbids the call).
type Rotations interface {
	RotationInfo(ctx context.Context) RotationInfo
	StartRootRotation(ctx context.Context, req StartRootRotation) (RotationInfo, error)
	RootRotationOp(ctx context.Context, op, by string) (RotationInfo, error)
	// RotateIntermediate rotates the intermediate of signer (a signer with
	// its own intermediate; "" the default one); an unknown signer is
	// InvalidArgument.
	RotateIntermediate(ctx context.Context, signer, by string) (IntermediateRotation, error)
}

// rotationRoutes registers the rotation routes.
func (h *handler) rotationRoutes(route func(string, Action, http.HandlerFunc), local bool) {
	route("GET "+pathRotation, ActGetRotation, h.getRotation)
	if !local {
		return
	}
	route("POST "+pathRotationRoot, ActRotate, h.startRootRotation)
	route("POST "+pathRotationRoot+"/{op}", ActRotate, h.rootRotationOp)
	route("POST "+pathRotationIntermediate, ActRotate, h.rotateIntermediate)
}

func (h *handler) noRotations(w http.ResponseWriter) bool {
	if h.rotations == nil {
		writeError(w, http.StatusServiceUnavailable, "this meshca serve does not run the rotation controllers")
		return true
	}
	return false
}

func (h *handler) getRotation(w http.ResponseWriter, r *http.Request) {
	if h.noRotations(w) {
		return
	}
	writeJSON(w, http.StatusOK, h.rotations.RotationInfo(r.Context()))
}

func (h *handler) startRootRotation(w http.ResponseWriter, r *http.Request) {
	if h.noRotations(w) {
		return
	}
	var req RootRotationRequest
	if !decodeBody(w, r, &req, "root rotation request") {
		return
	}
	start, err := req.Check()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	start.By = requesterOf(r)
	info, err := h.rotations.StartRootRotation(r.Context(), start)
	if err != nil && req.NewRoot == nil && caerr.CodeOf(err) == caerr.InvalidArgument {
		// B was named with flags: say them, not the root section's keys
		// they fill.
		reason := "invalid_new_root"
		if ce := (*caerr.Error)(nil); errors.As(err, &ce) {
			reason = ce.Reason
		}
		err = caerr.New(caerr.InvalidArgument, reason, "%s", flagNames.Replace(err.Error()))
	}
	h.answerRotation(w, r, info, err)
}

// flagNames names the root section's file keys as the flags of 'meshca
// rotate root' that fill them.
var flagNames = strings.NewReplacer("root.file.rootCert", "--new-root-cert", "root.file.rootKey", "--new-root-key", "root.file.rootPQKey", "--new-root-pq-key")

func (h *handler) rootRotationOp(w http.ResponseWriter, r *http.Request) {
	if h.noRotations(w) {
		return
	}
	op := r.PathValue("op")
	switch op {
	case RootOpPause, RootOpResume, RootOpAdvance:
	default:
		writeError(w, http.StatusNotFound, "unknown root rotation operation; use pause, resume or advance")
		return
	}
	info, err := h.rotations.RootRotationOp(r.Context(), op, requesterOf(r))
	h.answerRotation(w, r, info, err)
}

func (h *handler) rotateIntermediate(w http.ResponseWriter, r *http.Request) {
	if h.noRotations(w) {
		return
	}
	// An empty body (clients before --signer existed) is the default
	// intermediate.
	var req IntermediateRotationRequest
	if r.ContentLength != 0 && !decodeBody(w, r, &req, "intermediate rotation request") {
		return
	}
	out, err := h.rotations.RotateIntermediate(r.Context(), req.Signer, requesterOf(r))
	if err != nil {
		h.rotationError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) answerRotation(w http.ResponseWriter, r *http.Request, info RotationInfo, err error) {
	if err != nil {
		h.rotationError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (h *handler) rotationError(w http.ResponseWriter, r *http.Request, err error) {
	code := caerr.CodeOf(err)
	if code == caerr.Internal {
		h.log.ErrorContext(r.Context(), "admin: rotation", "err", err)
	}
	writeError(w, code.HTTP(), err.Error())
}

// Rotation returns the rotation state.
func (c *Client) Rotation(ctx context.Context) (RotationInfo, error) {
	var out RotationInfo
	err := c.do(ctx, http.MethodGet, pathRotation, nil, &out)
	return out, err
}

// StartRootRotation starts a root rotation.
func (c *Client) StartRootRotation(ctx context.Context, req RootRotationRequest) (RotationInfo, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return RotationInfo{}, err
	}
	var out RotationInfo
	err = c.do(ctx, http.MethodPost, pathRotationRoot, body, &out)
	return out, err
}

// RootRotationOp pauses, resumes or advances the root rotation.
func (c *Client) RootRotationOp(ctx context.Context, op string) (RotationInfo, error) {
	var out RotationInfo
	err := c.do(ctx, http.MethodPost, pathRotationRoot+"/"+op, []byte("{}"), &out)
	return out, err
}

// RotateIntermediate has the server rotate the intermediate of signer
// ("" the default one) now.
func (c *Client) RotateIntermediate(ctx context.Context, signer string) (IntermediateRotation, error) {
	body, err := json.Marshal(IntermediateRotationRequest{Signer: signer})
	if err != nil {
		return IntermediateRotation{}, err
	}
	var out IntermediateRotation
	err = c.do(ctx, http.MethodPost, pathRotationIntermediate, body, &out)
	return out, err
}

// JournalOf describes a root rotation's record.
func JournalOf(r store.RootRotation) *RootRotationJournal {
	j := &RootRotationJournal{ID: r.ID, Phase: r.Phase, Paused: r.Paused, NewRootSource: describeRootSource(r.NewRootSource),
		StartedAt: r.StartedAt, PhaseStartedAt: r.PhaseStartedAt, Waits: r.Waits, History: r.History, OldRoots: []string{}}
	describe := func(der []byte) string {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return "unparsable certificate"
		}
		sum := sha256.Sum256(der)
		return fmt.Sprintf("%s (SHA-256 %s)", c.Subject, hex.EncodeToString(sum[:8]))
	}
	for _, d := range r.OldRootsDER {
		j.OldRoots = append(j.OldRoots, describe(d))
	}
	j.NewRoot = describe(r.NewRootDER)
	return j
}

// describeRootSource names a journaled root section without its
// authentication settings.
func describeRootSource(b []byte) string {
	var rc config.RootConfig
	if json.Unmarshal(b, &rc) != nil {
		return ""
	}
	if rc.Source == config.RootSourceVault {
		s := fmt.Sprintf("vault %s mount %s", rc.Vault.Address, rc.Vault.Mount)
		if rc.Vault.IssuerRef != "" {
			s += " issuer " + rc.Vault.IssuerRef
		}
		return s
	}
	return "file " + rc.File.RootCert
}
