package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
	"github.com/meshca/meshca/issuer/admin"
	"github.com/meshca/meshca/issuer/authn"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/inventory"
)

// crlRevoker is crl.Revoker (the CLI without a server) or crl.Manager
// (the running service).
type crlRevoker interface {
	Revoke(ctx context.Context, req crl.Request) ([]store.Revocation, error)
}

// adminRevoker adapts a crlRevoker to the admin endpoint: bad input
// (crl.ErrInvalidRequest, or store.ErrInvalid should the store be the one
// that refuses it) becomes InvalidArgument, answered 400.
// With several replicas only the holder of the singleton jobs' Lease
// revokes (lead): its CRL manager rebuilds the CRLs, so a revocation
// another replica acknowledged could wait for the next republication.
type adminRevoker struct {
	r    crlRevoker
	lead func() bool
}

func (a adminRevoker) Revoke(ctx context.Context, req admin.RevokeRequest) ([]store.Revocation, error) {
	if a.lead != nil && !a.lead() {
		return nil, &caerr.Error{Code: caerr.FailedPrecondition, Reason: "not_lease_holder",
			Message: "this replica does not hold the lease of the singleton jobs (signers.controllers.leaderElection); revoke through the lease holder's admin endpoint"}
	}
	recs, err := a.r.Revoke(ctx, crl.Request{
		Serial: req.Serial, Identity: req.Identity, Generation: req.Generation,
		Reason: req.Reason, InvalidityDate: req.InvalidityDate, Requester: req.Requester,
	})
	if errors.Is(err, crl.ErrInvalidRequest) || errors.Is(err, store.ErrInvalid) {
		return nil, &caerr.Error{Code: caerr.InvalidArgument, Reason: "invalid_revocation", Message: err.Error()}
	}
	return recs, err
}

// RevocationNotices implements admin.RevocationNoticer: the records no
// CRL will list, from the running CRL manager.
func (a adminRevoker) RevocationNotices(ctx context.Context, recs []store.Revocation) []string {
	if u, ok := a.r.(interface {
		UnlistedNotices(context.Context, []store.Revocation) []string
	}); ok {
		return u.UnlistedNotices(ctx, recs)
	}
	return nil
}

// adminCRLs serves the manager's published CRLs.
type adminCRLs struct{ m *crl.Manager }

func (a adminCRLs) CRLs() []admin.CRL {
	var out []admin.CRL
	for _, p := range a.m.CRLs() {
		out = append(out, admin.CRL{Scope: p.Scope, Delta: p.Delta, Number: p.Number, DER: p.DER, ThisUpdate: p.ThisUpdate, NextUpdate: p.NextUpdate})
	}
	return out
}

func storeState(cfg *config.Config, st store.Store) admin.StoreState {
	ss := admin.StoreState{TrustDomain: cfg.TrustDomain, Path: cfg.Store.Describe(), Generations: st}
	if r, ok := st.(store.Revocations); ok {
		ss.Revocations = r
	}
	if h, ok := st.(interface{ Healthy() error }); ok {
		ss.Healthy = h.Healthy
	}
	return ss
}

// adminDeps are what the admin endpoint serves.
type adminDeps struct {
	cfg *config.Config
	rt  *authority.Runtime
	// crl is the running revocation service; nil serves no revocations.
	crl *crl.Manager
	// single tells whether this replica holds the singleton jobs' Lease
	// (nil: one replica).
	single *singletons
	door   *istioFrontDoor
	rc     *rest.Config
	log    *slog.Logger
	reg    prometheus.Registerer
	// inventory are the CA inventory's sources and rotation the rotating
	// controllers, for the status route (statuswire.go).
	inventory []inventory.Source
	rotation  []rotation.Reporter
	// rotations serves the admin rotation routes; nil serves none.
	rotations admin.Rotations
}

// adminServers are the admin socket and, with server.adminListen, the TCP
// listener.
type adminServers struct {
	socket, tcp *admin.Server
}

// Path is the socket path, for the ready line.
func (a *adminServers) Path() string { return a.socket.Path() }

// Close stops both.
func (a *adminServers) Close() error {
	err := a.socket.Close()
	if a.tcp != nil {
		err = errors.Join(err, a.tcp.Close())
	}
	return err
}

// startAdmin serves the admin socket, and the admin TCP listener when
// configured, until ctx ends.
func startAdmin(ctx context.Context, d adminDeps) (*adminServers, error) {
	td, err := identity.TrustDomain(d.cfg.TrustDomain)
	if err != nil {
		return nil, err
	}
	o := admin.Options{
		Socket: d.cfg.Server.AdminSocket, Signer: d.rt.Authority, Records: d.rt.Store, TrustDomain: td, Log: d.log, Registerer: d.reg,
		Status: liveStatus(d),
	}
	if r, ok := d.rt.Store.(store.Revocations); ok {
		o.Revocations = r
	}
	if d.crl != nil {
		o.Revoker, o.CRLs = adminRevoker{r: d.crl, lead: d.single.leads()}, adminCRLs{d.crl}
	}
	o.CACerts = adminCACerts{rt: d.rt, crl: d.crl}
	o.Rotations = d.rotations
	sock, err := admin.Listen(o)
	if err != nil {
		return nil, fmt.Errorf("server.adminSocket: %w", err)
	}
	go serveAdmin(ctx, sock, d.log)
	out := &adminServers{socket: sock}
	if d.cfg.Server.AdminListen == "" {
		return out, nil
	}
	ro, err := remoteOptions(d, o)
	if err != nil {
		sock.Close()
		return nil, err
	}
	if out.tcp, err = admin.ListenTCP(ro); err != nil {
		sock.Close()
		return nil, fmt.Errorf("server.adminListen: %w", err)
	}
	go serveAdmin(ctx, out.tcp, d.log)
	d.log.Info("admin API listening", "address", out.tcp.Path(), "admin_identities", len(ro.Admins), "kubernetes_tokens", ro.Tokens != nil)
	return out, nil
}

func serveAdmin(ctx context.Context, s *admin.Server, log *slog.Logger) {
	if err := s.Serve(ctx); err != nil {
		log.Error("admin endpoint stopped", "address", s.Path(), "err", err)
	}
}

// remoteOptions wires the TCP listener's TLS (meshca's own serving
// certificate, like the gRPC port), client certificates (the front door's
// verification, revocation check included) and Kubernetes tokens.
func remoteOptions(d adminDeps, o admin.Options) (admin.RemoteOptions, error) {
	ro := admin.RemoteOptions{Options: o, Listen: d.cfg.Server.AdminListen, TLS: d.door.tls}
	cc := &authn.ClientCert{Trust: d.rt.Authority, Records: d.rt.Store, TrustDomain: d.cfg.TrustDomain}
	if d.crl != nil {
		cc.Revocations = d.crl
	}
	ro.ClientCert = cc
	for _, s := range d.cfg.Server.AdminIdentities {
		id, err := identity.Parse(s)
		if err != nil {
			return ro, fmt.Errorf("server.adminIdentities: %w", err)
		}
		ro.Admins = append(ro.Admins, id.String())
	}
	if d.rc == nil {
		return ro, nil
	}
	local, err := kubernetes.NewForConfig(d.rc)
	if err != nil {
		return ro, err
	}
	clusters, err := authn.LoadClusters(d.cfg.Kubernetes.ClusterID, local, nil, nil)
	if err != nil {
		return ro, err
	}
	// The admin's own reviewer: its audiences are the admin API's, and its
	// metrics are not the workload port's.
	tr, err := authn.NewTokenReviewer(authn.TokenReviewOptions{
		Clusters: clusters, TrustDomain: d.cfg.TrustDomain, Audiences: d.cfg.Server.AdminTokenAudiences,
		CacheTTL: d.cfg.Authentication.TokenReview.CacheTTL.Duration,
	})
	if err != nil {
		return ro, err
	}
	ro.Tokens, ro.Access = tr, admin.SubjectAccessReviewer{Client: local}
	return ro, nil
}
