package main

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/issuer/admin"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/intermediate"
	"github.com/meshca/meshca/rotation/rootrotation"
)

// rotating are the rotation controllers of an opened CA runtime: the
// intermediate manager and the root rotation controller.
type rotating struct {
	m    *intermediate.Manager
	root *rootrotation.Controller
	// lineages are the signers with their own intermediate.
	lineages signerLineages
	// single runs the singleton jobs (nil: right away, one replica).
	single *singletons
}

// openRotating opens the CA with the root rotation's composite source
// around the configured root (rootrotation.Open) and registers both
// controllers' rotation metrics.
func openRotating(ctx context.Context, cfg *config.Config, log *slog.Logger, reg prometheus.Registerer, opts ...func(*rootrotation.Options)) (*authority.Runtime, *rotating, error) {
	rt, m, ctl, err := rootrotation.Open(ctx, cfg, nil, log, reg, opts...)
	if err != nil {
		return nil, nil, err
	}
	if reg != nil {
		if err := rotation.RegisterMetrics(reg, ctl); err != nil {
			rt.Close()
			return nil, nil, err
		}
	}
	return rt, &rotating{m: m, root: ctl}, nil
}

// reporters are the controllers (the default intermediate's, the root's,
// then each separate signer's intermediate), for the rules and meshca
// status.
func (r *rotating) reporters() []rotation.Reporter {
	return append([]rotation.Reporter{r.m, r.root}, r.lineages.reporters()...)
}

// runRootRotation runs the root rotation controller until ctx ends, its
// phase alerts going to the alerting engine (nil: none).
func runRootRotation(ctx context.Context, r *rotating, a *alerts) {
	if a != nil {
		r.root.SetAlerts(a.engine)
	}
	if r.single != nil {
		r.single.Go("root-rotation", r.root.Run)
		// While another replica holds the Lease, this one adopts its
		// journal's phases (their roots).
		go r.root.Follow(ctx)
		return
	}
	go r.root.Run(ctx)
}

// RotationInfo implements admin.Rotations.
func (r *rotating) RotationInfo(context.Context) admin.RotationInfo {
	info := admin.RotationInfo{}
	for _, rep := range r.reporters() {
		info.Rotations = append(info.Rotations, rep.RotationStatus())
	}
	if rec, ok := r.root.Record(); ok {
		info.Root = admin.JournalOf(rec)
	}
	return info
}

// notLeaseHolder refuses a root rotation request on a replica that does
// not hold the Lease of the singleton jobs (before anything is validated
// or minted), as RotateIntermediate and revocations do.
func (r *rotating) notLeaseHolder() error {
	if lead := r.single.leads(); lead != nil && !lead() {
		return caerr.New(caerr.FailedPrecondition, "not_lease_holder",
			"this replica does not hold the lease of the singleton jobs (signers.controllers.leaderElection); send it to the lease holder's admin endpoint")
	}
	return nil
}

// StartRootRotation implements admin.Rotations.
func (r *rotating) StartRootRotation(ctx context.Context, req admin.StartRootRotation) (admin.RotationInfo, error) {
	if err := r.notLeaseHolder(); err != nil {
		return admin.RotationInfo{}, err
	}
	_, err := r.root.Start(ctx, rootrotation.StartRequest{NewRoot: req.NewRoot, Waits: req.Waits, By: req.By})
	if err != nil {
		return admin.RotationInfo{}, leaseRefusal(err)
	}
	return r.RotationInfo(ctx), nil
}

// leaseRefusal maps intermediate.ErrNotLeader (the Lease lost while the
// request ran) to FailedPrecondition.
func leaseRefusal(err error) error {
	if errors.Is(err, intermediate.ErrNotLeader) {
		return caerr.New(caerr.FailedPrecondition, "not_lease_holder", "%s; send it to the lease holder's admin endpoint", err.Error())
	}
	return err
}

// RootRotationOp implements admin.Rotations.
func (r *rotating) RootRotationOp(ctx context.Context, op, by string) (admin.RotationInfo, error) {
	if err := r.notLeaseHolder(); err != nil {
		return admin.RotationInfo{}, err
	}
	var err error
	switch op {
	case admin.RootOpPause:
		_, err = r.root.Pause(ctx, by)
	case admin.RootOpResume:
		_, err = r.root.Resume(ctx, by)
	case admin.RootOpAdvance:
		_, err = r.root.Advance(ctx, by)
	default:
		err = caerr.New(caerr.InvalidArgument, "unknown_op", "unknown root rotation operation %q", op)
	}
	if err != nil {
		return admin.RotationInfo{}, leaseRefusal(err)
	}
	return r.RotationInfo(ctx), nil
}

// RotateIntermediate implements admin.Rotations.
func (r *rotating) RotateIntermediate(ctx context.Context, signer, by string) (admin.IntermediateRotation, error) {
	mgr := r.m
	if signer != "" {
		mgr = nil
		var names []string
		for _, l := range r.lineages {
			names = append(names, l.name)
			if l.name == signer {
				mgr = l.m
			}
		}
		if mgr == nil {
			return admin.IntermediateRotation{}, caerr.New(caerr.InvalidArgument, "unknown_signer",
				"signer %s has no intermediate of its own; signers with one (authentication.certSigners with intermediate.separate): %v", identity.Quote(signer), names)
		}
	}
	if rec, ok := r.root.Record(); ok && rootrotation.Phase(rec.Phase) == rootrotation.PhaseSwitch {
		return admin.IntermediateRotation{}, caerr.New(caerr.FailedPrecondition, "root_rotation_switching", "the root rotation is switching the intermediate right now; see meshca rotate status")
	}
	r.single.settle()
	m, err := mgr.RotateNow(ctx, "requested by "+by)
	if errors.Is(err, intermediate.ErrNotLeader) {
		return admin.IntermediateRotation{}, leaseRefusal(err)
	}
	if err != nil {
		return admin.IntermediateRotation{}, caerr.Wrap(err, caerr.CodeOf(err), "rotate_intermediate", "rotate the intermediate")
	}
	out := admin.IntermediateRotation{Generation: m.Generation, Subject: m.Bundle.Cert.Subject.String(), NotAfter: m.Bundle.Cert.NotAfter}
	if chain := m.Bundle.Chain(); len(chain) > 1 {
		out.Issuer = issuerName(chain[len(chain)-1])
	}
	return out, nil
}

func issuerName(c *x509.Certificate) string { return c.Subject.String() }
