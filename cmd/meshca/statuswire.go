package main

import (
	"context"
	"crypto/x509"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/issuer/admin"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/inventory"
)

// liveStatus is the running service's status: the store, the inventory
// sources the metrics read (registerInventory), the rotating controllers
// serve registers in adminDeps.rotation (each a rotation.Reporter) and the
// alert states.
func liveStatus(d adminDeps) *admin.LiveStatus {
	ls := &admin.LiveStatus{Store: storeState(d.cfg, d.rt.Store), Inventory: d.inventory, Rotation: d.rotation}
	ls.Alerts = d.rt.Store
	return ls
}

// offlineStatus reads a stopped service's store: its roots are those the
// active generation chains to (the last certificate of its chain), its
// generations as the running service would publish them, and its alerts.
func offlineStatus(ctx context.Context, cfg *config.Config, st store.Store) *admin.LiveStatus {
	roots, active := storeRoots(ctx, st)
	var reporters []rotation.Reporter
	if info, err := storedRotation(ctx, st); err == nil {
		for _, r := range info.Rotations {
			reporters = append(reporters, fixedReporter(r))
		}
	}
	return &admin.LiveStatus{
		Rotation: reporters,
		Store:    storeState(cfg, st),
		Inventory: []inventory.Source{&inventory.CASource{
			Roots:       func() []*x509.Certificate { return roots },
			Active:      func() uint64 { return active },
			Generations: st,
			Grace:       cfg.Issuance.MaxCertTTL.Duration,
		}},
		Alerts: st,
	}
}

// storeRoots is the root of the active generation's chain, and its ID.
func storeRoots(ctx context.Context, st store.Store) ([]*x509.Certificate, uint64) {
	gens, err := st.ListGenerations(ctx)
	if err != nil {
		return nil, 0 // StoreStatus reports the error
	}
	for _, g := range gens {
		if !g.Active() || g.Lineage() != store.DefaultSigner || len(g.ChainDER) == 0 {
			continue
		}
		if c, err := x509.ParseCertificate(g.ChainDER[len(g.ChainDER)-1]); err == nil {
			return []*x509.Certificate{c}, g.ID
		}
		return nil, g.ID
	}
	return nil, 0
}
