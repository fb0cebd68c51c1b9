package rootrotation

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation"
)

// StartRequest starts a root rotation.
type StartRequest struct {
	// NewRoot names B: a file root (root.file.rootCert, rootKey and, for a
	// Catalyst root, rootPQKey) or a Vault PKI mount and issuer.
	NewRoot config.RootConfig
	// Waits override the controller's defaults field by field.
	Waits store.RootRotationWaits
	// By is who asks (the admin requester), for the journal and the audit.
	By string
}

func invalid(format string, args ...any) error {
	return caerr.New(caerr.InvalidArgument, "invalid_new_root", format, args...)
}

// Start validates the new root completely, journals a rotation in phase
// publish-both-roots and has Run begin it. Bad input, or a rotation
// already in progress, is refused and changes nothing.
//
// The new root is read, asked (Vault) and made to mint a throwaway
// intermediate without the controller's lock, so that a slow or stuck
// source delays only this call (ctx bounds it), never RotationStatus or
// Run; the lock is taken again to check that no other rotation started
// meanwhile and to journal.
func (c *Controller) Start(ctx context.Context, req StartRequest) (rotation.Status, error) {
	c.mu.Lock()
	err := c.startAllowedLocked()
	c.mu.Unlock()
	if err != nil {
		return rotation.Status{}, err
	}
	v, err := c.validate(ctx, req)
	if err != nil {
		return rotation.Status{}, err
	}
	c.mu.Lock()
	if err := c.startAllowedLocked(); err != nil {
		c.mu.Unlock()
		return rotation.Status{}, err
	}
	st, ev, err := c.journalStartLocked(ctx, req, v)
	if err != nil {
		c.mu.Unlock()
		return st, err
	}
	c.unlockAndAnnounce(ctx, []phaseEvent{ev}, st)
	c.poke()
	return st, nil
}

// startAllowedLocked refuses a start while a rotation is in progress or
// cannot be started.
func (c *Controller) startAllowedLocked() error {
	if r := c.rec; r != nil && Phase(r.Phase).InProgress() {
		return caerr.New(caerr.FailedPrecondition, "root_rotation_in_progress",
			"root rotation %s is in phase %s; wait for it to finish (meshca rotate status) before starting another", r.ID, Phase(r.Phase))
	}
	if c.o.Source == nil {
		return caerr.New(caerr.FailedPrecondition, "root_not_rotatable", "%v", c.o.SourceProblem)
	}
	if c.rec != nil && c.o.Source.Phase() == PhaseDone {
		return caerr.New(caerr.FailedPrecondition, "root_rotation_config_stale",
			"root rotation %s finished, but the configuration still names its old root: %s, restart meshca serve, then rotate again", c.rec.ID, configKeys(mustDecode(c.rec.NewRootSource)))
	}
	return nil
}

// validStart is a new root that passed every check of validate.
type validStart struct {
	spec    config.RootConfig
	waits   store.RootRotationWaits
	next    root.Source
	newRoot *x509.Certificate
	old     []*x509.Certificate
}

// validate checks the request and the new root, without the lock: it
// reads and asks B, and has B mint a throwaway intermediate (trialMint).
// It reads only what never changes after New (c.o's sources, waits and
// sections).
func (c *Controller) validate(ctx context.Context, req StartRequest) (validStart, error) {
	waits, err := c.waits(req.Waits)
	if err != nil {
		return validStart{}, err
	}
	if req.NewRoot.Source == config.RootSourceVault {
		req.NewRoot.Vault.Init() // the defaults of meshca.yaml
	}
	if err := c.checkSpec(req.NewRoot); err != nil {
		return validStart{}, err
	}
	desc := describeRoot(req.NewRoot)
	next, err := c.o.NewSource(ctx, req.NewRoot)
	if err != nil {
		return validStart{}, invalid("the new root (%s): %v", desc, err)
	}
	if !next.Capabilities().Mint {
		return validStart{}, invalid("the new root (%s) cannot mint intermediates", desc)
	}
	roots, err := next.Roots(ctx)
	if err != nil {
		return validStart{}, invalid("the new root (%s): %v", desc, err)
	}
	now := c.clk.Now()
	newRoot := roots[0]
	if err := checkRoot(newRoot, now); err != nil {
		return validStart{}, invalid("the new root (%s) %v", desc, err)
	}
	if err := c.checkOutlives(newRoot, waits, now); err != nil {
		return validStart{}, invalid("the new root (%s) %v", desc, err)
	}
	old, err := c.o.Source.Old().Roots(ctx)
	if err != nil {
		return validStart{}, caerr.Wrap(err, caerr.Unavailable, "old_root_unavailable", "the roots in force cannot be read")
	}
	for _, r := range old {
		if r.Equal(newRoot) {
			return validStart{}, invalid("the new root (%s) is already a root in force (%s); name a new root", desc, r.Subject)
		}
	}
	if err := trialMint(ctx, next, newRoot, c.o.Intermediate, now); err != nil {
		return validStart{}, invalid("the new root (%s) cannot issue meshca's intermediate: %v", desc, err)
	}
	return validStart{spec: req.NewRoot, waits: waits, next: next, newRoot: newRoot, old: old}, nil
}

// journalStartLocked journals the validated rotation and applies it.
func (c *Controller) journalStartLocked(ctx context.Context, req StartRequest, v validStart) (rotation.Status, phaseEvent, error) {
	now := c.clk.Now()
	newRoot, old := v.newRoot, v.old
	newSpec, _ := json.Marshal(v.spec)
	oldSpec, _ := json.Marshal(c.o.OldRootConfig)
	rec := store.RootRotation{
		ID: "root-" + now.UTC().Format("20060102T150405Z"), Phase: string(PhasePublish),
		NewRootDER: newRoot.Raw, NewRootSource: newSpec, OldRootSource: oldSpec,
		StartedAt: now, PhaseStartedAt: now, Waits: v.waits,
		History: []store.RootRotationEvent{{At: now, Phase: string(PhasePublish), Event: "start", By: req.By,
			Detail: fmt.Sprintf("new root %s (SHA-256 %s)", newRoot.Subject, fingerprint(newRoot))}},
	}
	for _, r := range old {
		rec.OldRootsDER = append(rec.OldRootsDER, r.Raw)
	}
	if err := c.journal(ctx, rec); err != nil {
		return rotation.Status{}, phaseEvent{}, caerr.Wrap(err, caerr.Internal, "journal", "journal the root rotation")
	}
	if c.o.OnEnter != nil {
		c.o.OnEnter(PhasePublish)
	}
	c.rec, c.oldRoots, c.newRoot = &rec, old, newRoot
	c.failures, c.lastErr, c.waiting, c.next, c.configHint = 0, nil, "", now, ""
	c.o.Source.set(PhasePublish, old, newRoot, v.next)
	c.log.Info("root rotation: started", "rotation", rec.ID, "by", req.By, "new_root", newRoot.Subject.String(), "new_root_sha256", fingerprint(newRoot))
	return c.statusLocked(), phaseEvent{id: rec.ID, phase: PhasePublish, event: "start", by: req.By}, nil
}

// waits fills w's zero fields with the controller's and checks them.
func (c *Controller) waits(w store.RootRotationWaits) (store.RootRotationWaits, error) {
	if w.WorkloadsMin == 0 {
		w.WorkloadsMin = c.o.Waits.WorkloadsMin
	}
	if w.WorkloadsMax == 0 {
		w.WorkloadsMax = c.o.Waits.WorkloadsMax
	}
	if w.TTLMax == 0 {
		w.TTLMax = c.o.Waits.TTLMax
	}
	switch {
	case w.WorkloadsMin < 0 || w.WorkloadsMax < 0 || w.TTLMax < 0:
		return w, invalid("the waits must not be negative")
	case w.WorkloadsMax < w.WorkloadsMin:
		return w, invalid("the workloads' maximum wait %s is shorter than their minimum wait %s", w.WorkloadsMax, w.WorkloadsMin)
	}
	return w, nil
}

// checkSpec checks the shape of the new root's section before anything
// is loaded.
func (c *Controller) checkSpec(rc config.RootConfig) error {
	var errs []string
	add := func(key, format string, args ...any) {
		errs = append(errs, key+": "+fmt.Sprintf(format, args...))
	}
	switch rc.Source {
	case config.RootSourceFile:
		switch {
		case rc.File.CACertsDir != "":
			add("new root", "a pre-issued intermediate (cacertsDir) cannot be rotated to: name the new root's certificate and key")
		case rc.File.RootCert == "" || rc.File.RootKey == "":
			add("new root", "name the new root's certificate and key (--new-root-cert and --new-root-key)")
		}
	case config.RootSourceVault:
		if rc.File != (config.FileRootConfig{}) {
			add("root.file", "must be empty when root.source is vault")
		}
		rc.Vault.Validate(add)
	default:
		add("root.source", "%q is not supported; use file or vault", rc.Source)
	}
	if len(errs) > 0 {
		return invalid("%s", strings.Join(errs, "; "))
	}
	// The kind of root must stay: whether meshca holds the root key (and
	// signs the root's CRL) is fixed when meshca starts.
	oldVault := c.o.Source.Old().Kind() == root.KindVault
	if oldVault != (rc.Source == config.RootSourceVault) {
		return invalid("rotating between a file root and a Vault root is not supported; the new root must be a %s root like the one in force", map[bool]string{true: "Vault", false: "file"}[oldVault])
	}
	return nil
}

// checkRoot checks that c is a self-signed CA that can sign intermediates
// and CRLs, valid at now.
func checkRoot(c *x509.Certificate, now time.Time) error {
	if string(c.RawIssuer) != string(c.RawSubject) || root.CheckSignatureFrom(c, c) != nil {
		return errors.New("is not self-signed: name a root certificate")
	}
	if err := root.CheckSigningCA(c); err != nil {
		return err
	}
	return root.CheckValidAt(c, now)
}

// checkOutlives checks that root r outlives the rotation: the longest
// waits of phases 2 and 4, and then an intermediate minted under it at
// the end (intermediate.lifetime), whose validity the root's must cover
// (RFC 5280 section 6.1.3 (a)(2): every certificate of the path must be
// valid at the time of validation).
func (c *Controller) checkOutlives(r *x509.Certificate, w store.RootRotationWaits, now time.Time) error {
	life := c.o.Intermediate.Lifetime.Duration
	end := now.Add(w.WorkloadsMax + w.TTLMax + life)
	if r.NotAfter.After(end) {
		return nil
	}
	return fmt.Errorf("expires %s, before the rotation and an intermediate under it end (%s: the workloads' maximum wait %s, the old leaves' maximum wait %s and intermediate.lifetime %s from now); name a root that lives longer, or shorten the waits",
		r.NotAfter.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339), w.WorkloadsMax, w.TTLMax, life)
}

// Pause stops the rotation where it is until Resume; it is journaled.
func (c *Controller) Pause(ctx context.Context, by string) (rotation.Status, error) {
	return c.setPaused(ctx, true, by)
}

// Resume continues a paused rotation; it is journaled.
func (c *Controller) Resume(ctx context.Context, by string) (rotation.Status, error) {
	st, err := c.setPaused(ctx, false, by)
	if err == nil {
		c.poke()
	}
	return st, err
}

func (c *Controller) setPaused(ctx context.Context, paused bool, by string) (rotation.Status, error) {
	c.mu.Lock()
	st, ev, err := c.setPausedLocked(ctx, paused, by)
	if err != nil || ev == nil {
		c.mu.Unlock()
		return st, err
	}
	c.unlockAndAnnounce(ctx, []phaseEvent{*ev}, st)
	return st, nil
}

func (c *Controller) setPausedLocked(ctx context.Context, paused bool, by string) (rotation.Status, *phaseEvent, error) {
	what := map[bool]string{true: "pause", false: "resume"}[paused]
	r := c.rec
	if r == nil || !Phase(r.Phase).InProgress() {
		return rotation.Status{}, nil, errNoRotation(what)
	}
	if r.Paused == paused {
		return c.statusLocked(), nil, nil
	}
	now := c.clk.Now()
	next := *r
	next.Paused = paused
	next.History = appendHistory(next.History, store.RootRotationEvent{At: now, Phase: r.Phase, Event: what, By: by})
	if err := c.journal(ctx, next); err != nil {
		return rotation.Status{}, nil, caerr.Wrap(err, caerr.Internal, "journal", "journal the root rotation's %s", what)
	}
	c.rec = &next
	c.log.Info("root rotation: "+what+"d", "rotation", next.ID, "phase", next.Phase, "by", by)
	return c.statusLocked(), &phaseEvent{id: next.ID, phase: Phase(next.Phase), event: what, by: by}, nil
}

// Advance ends the current wait now (an operator's decision, journaled),
// as if its maximum had passed.
func (c *Controller) Advance(ctx context.Context, by string) (rotation.Status, error) {
	c.mu.Lock()
	r := c.rec
	switch {
	case r == nil || !Phase(r.Phase).InProgress():
		c.mu.Unlock()
		return rotation.Status{}, errNoRotation("advance")
	case r.Paused:
		c.mu.Unlock()
		return rotation.Status{}, caerr.New(caerr.FailedPrecondition, "root_rotation_paused", "root rotation %s is paused; resume it first (meshca rotate resume)", r.ID)
	case !Phase(r.Phase).isWait():
		c.mu.Unlock()
		return rotation.Status{}, caerr.New(caerr.FailedPrecondition, "not_a_wait",
			"root rotation %s is in phase %s, which is not a wait: meshca acts in it on its own and retries every %s (see meshca status)", r.ID, Phase(r.Phase), c.o.Interval)
	}
	ev, moved := c.enterLocked(ctx, Phase(r.Phase).next(), "advance", by, "the wait was ended by an operator")
	if !moved {
		err := c.lastErr
		c.mu.Unlock()
		return rotation.Status{}, caerr.Wrap(err, caerr.Internal, "journal", "advance the root rotation")
	}
	st := c.statusLocked()
	c.unlockAndAnnounce(ctx, []phaseEvent{*ev}, st)
	c.poke()
	return st, nil
}

func fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

func decodeRootConfig(b []byte) (config.RootConfig, error) {
	var rc config.RootConfig
	err := json.Unmarshal(b, &rc)
	return rc, err
}

func mustDecode(b []byte) config.RootConfig {
	rc, _ := decodeRootConfig(b)
	return rc
}

// describeRoot names a root section for people, without secrets.
func describeRoot(rc config.RootConfig) string {
	if rc.Source == config.RootSourceVault {
		s := fmt.Sprintf("Vault %s mount %s", rc.Vault.Address, rc.Vault.Mount)
		if rc.Vault.IssuerRef != "" {
			s += " issuer " + rc.Vault.IssuerRef
		}
		return s
	}
	return "file " + rc.File.RootCert
}

// configKeys says which configuration keys name rc.
func configKeys(rc config.RootConfig) string {
	if rc.Source == config.RootSourceVault {
		s := fmt.Sprintf("set root.vault.address %s and root.vault.mount %s", rc.Vault.Address, rc.Vault.Mount)
		if rc.Vault.IssuerRef != "" {
			s += " and root.vault.issuerRef " + rc.Vault.IssuerRef
		}
		return s
	}
	s := fmt.Sprintf("set root.file.rootCert %s and root.file.rootKey %s", rc.File.RootCert, rc.File.RootKey)
	if rc.File.RootPQKey != "" {
		s += " and root.file.rootPQKey " + rc.File.RootPQKey
	}
	return s
}
