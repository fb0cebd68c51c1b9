package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/issuer/authn"
	"github.com/meshca/meshca/issuer/kubesigner"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/intermediate"
	"github.com/meshca/meshca/trustbundle/publish"
)

// kubeconfigReadTimeout bounds reading a cluster's kubeconfig Secret.
const kubeconfigReadTimeout = 30 * time.Second

// clusterRESTConfig returns the REST config of cl: from its kubeconfig
// file, or from the kubeconfig in a Secret of the local cluster, read
// once with local (a Secret edited later takes effect on restart).
func clusterRESTConfig(ctx context.Context, cl config.ClusterConfig, local kubernetes.Interface) (*rest.Config, error) {
	var (
		rc  *rest.Config
		err error
	)
	if s := cl.KubeconfigSecret; s != nil {
		if local == nil {
			return nil, fmt.Errorf("cluster %q: kubeconfigSecret needs the local cluster (kubernetes.kubeconfig or kubernetes.inCluster)", cl.ID)
		}
		ctx, cancel := context.WithTimeout(ctx, kubeconfigReadTimeout)
		defer cancel()
		sec, err := local.CoreV1().Secrets(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("cluster %q: reading its kubeconfig Secret %s/%s: %w", cl.ID, s.Namespace, s.Name, err)
		}
		b, ok := sec.Data[s.Key]
		if !ok {
			return nil, fmt.Errorf("cluster %q: Secret %s/%s has no key %q (set clusters[].kubeconfigSecret.key)", cl.ID, s.Namespace, s.Name, s.Key)
		}
		if rc, err = clientcmd.RESTConfigFromKubeConfig(b); err != nil {
			// Not %w: the parser may quote the Secret's content.
			return nil, fmt.Errorf("cluster %q: Secret %s/%s key %q is not a usable kubeconfig", cl.ID, s.Namespace, s.Name, s.Key)
		}
	} else if rc, err = clientcmd.BuildConfigFromFlags("", cl.Kubeconfig); err != nil {
		return nil, fmt.Errorf("cluster %q: kubeconfig %s: %w", cl.ID, cl.Kubeconfig, err)
	}
	authn.TuneRESTConfig(rc)
	return rc, nil
}

// tokenReviewClients are the clients of the remote clusters whose
// TokenReview the Istio endpoint selects by the clusterid header: the
// meshca-signs clusters and the deprecated kubernetes.remoteClusters
// (config.TokenReviewClusters), so that both feed one map.
func tokenReviewClients(ctx context.Context, cfg *config.Config, local kubernetes.Interface) (map[string]kubernetes.Interface, error) {
	out := map[string]kubernetes.Interface{}
	for id, cl := range cfg.TokenReviewClusters() {
		rc, err := clusterRESTConfig(ctx, cl, local)
		if err != nil {
			return nil, err
		}
		if out[id], err = kubernetes.NewForConfig(rc); err != nil {
			return nil, fmt.Errorf("cluster %q: %w", id, err)
		}
	}
	return out, nil
}

// meshCluster is one entry of the clusters section at serve time: its
// trust publisher (the cacerts Secret of a plug-in cluster, the root and
// CRL ConfigMaps and ClusterTrustBundles of every cluster) and, for a
// plug-in cluster, the lineage of its own intermediate.
type meshCluster struct {
	cfg    config.ClusterConfig
	rc     *rest.Config
	client kubernetes.Interface
	pub    *trustPublisher
	// lineage is a plug-in cluster's intermediate (nil: meshca-signs).
	lineage *signerLineage
}

// meshClusters are the clusters of a serve run, in configuration order.
type meshClusters []*meshCluster

// openClusters opens every configured cluster: a plug-in cluster's
// intermediate manager (the lineage "cluster:<id>", resumed from its
// journal or minted from the root source with the cluster ID in its
// subject, rotated, revoked and reported like a signer with its own
// intermediate) is appended to rot.lineages, so that the CRL manager
// builds its CRLs, the root rotation moves it, and 'meshca rotate
// intermediate --signer cluster:<id>' rotates it. Call it before the CRL
// manager starts. Nothing is written to a cluster before start.
func openClusters(ctx context.Context, cfg *config.Config, rt *authority.Runtime, rot *rotating, localRC *rest.Config, log *slog.Logger, reg prometheus.Registerer) (meshClusters, error) {
	if len(cfg.Clusters) == 0 {
		return nil, nil
	}
	var local kubernetes.Interface
	if localRC != nil {
		var err error
		if local, err = kubernetes.NewForConfig(localRC); err != nil {
			return nil, err
		}
	}
	var out meshClusters
	for _, cl := range cfg.Clusters {
		rc, err := clusterRESTConfig(ctx, cl, local)
		if err != nil {
			return nil, fmt.Errorf("clusters: %w", err)
		}
		rc.UserAgent = "meshca"
		mc := &meshCluster{cfg: cl, rc: rc}
		m := rt.Authority.Material()
		if cl.PlugIn() {
			if mc.lineage, m, err = openClusterLineage(ctx, cfg, cl, rt, rot, log, reg); err != nil {
				return nil, err
			}
			rot.lineages = append(rot.lineages, mc.lineage)
		}
		client, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("clusters: cluster %q: %w", cl.ID, err)
		}
		mc.client = client
		tb := cfg.TrustBundle
		tb.IstiodNamespace, tb.PublishCACerts = cl.IstioNamespace, cl.PlugIn()
		// No registerer: meshca_trustbundle_* describe the local cluster;
		// a cluster's problems are logged and kept in the publisher's own
		// alert engine, not the shared one, whose alerts are keyed by
		// object and would mix the clusters.
		p, err := publish.New(client, tb, publish.WithLogger(log.With("cluster", cl.ID)))
		if err != nil {
			return nil, fmt.Errorf("clusters: cluster %q: %w", cl.ID, err)
		}
		mc.pub = &trustPublisher{p: p, log: log.With("cluster", cl.ID), caCerts: cl.PlugIn()}
		if err := mc.pub.material(&mc.pub.d, m); err != nil {
			return nil, fmt.Errorf("clusters: cluster %q: %w", cl.ID, err)
		}
		out = append(out, mc)
	}
	// The root rotation moves each plug-in cluster's intermediate after
	// the default signer's and the signers', and completes a roots phase
	// only once every cluster trusts the roots (rootsGate), also when all
	// of them are meshca-signs and the default signer is the only lineage.
	for _, mc := range out {
		if mc.lineage != nil {
			rot.root.AddLineage(mc.cfg.Lineage(), uncountedLineage{mc.lineage.m})
		}
	}
	rot.root.AddRootsGate(out.rootsGate)
	return out, nil
}

// openClusterLineage starts the intermediate manager of a plug-in
// cluster's own intermediate (config.ClusterIntermediate: classical, the
// cluster's subject) on the runtime's store, key store and root source.
func openClusterLineage(ctx context.Context, cfg *config.Config, cl config.ClusterConfig, rt *authority.Runtime, rot *rotating, log *slog.Logger, reg prometheus.Registerer) (*signerLineage, *authority.Material, error) {
	ccfg := *cfg
	ccfg.Intermediate = cfg.ClusterIntermediate(cl)
	o := intermediate.Options{Config: &ccfg, Keys: rt.Keys, Store: rt.Store, Root: rt.Root,
		Signer: cl.Lineage(), Log: log.With("cluster", cl.ID)}
	if rot.single != nil {
		o.Leader, o.FollowInterval = rot.single.leading(), rot.single.follow
	}
	m := intermediate.New(o)
	mat, err := m.Start(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("clusters: cluster %q: its own intermediate: %w", cl.ID, err)
	}
	if reg != nil {
		if err := rotation.RegisterMetrics(reg, m); err != nil {
			return nil, nil, err
		}
	}
	log.Info("plug-in cluster with its own intermediate", "cluster", cl.ID, "generation", mat.Generation,
		"subject", mat.Bundle.Cert.Subject.String(), "not_after", mat.Bundle.Cert.NotAfter)
	// No Authority: meshca signs nothing with it; the cluster's istiod does.
	return &signerLineage{name: cl.Lineage(), m: m}, mat, nil
}

// withCRLs is the CRL manager's Publish: ca-crl.pem (the CRL of every CA
// meshca runs, each lineage's and the roots', so that revoking one
// cluster's intermediate reaches every cluster) goes to the local trust
// publisher and to every cluster's.
func (cs meshClusters) withCRLs(local func(context.Context, []byte) error) func(context.Context, []byte) error {
	return func(ctx context.Context, caCRL []byte) error {
		err := local(ctx, caCRL)
		for _, c := range cs {
			if cerr := c.pub.setCRLs(ctx, caCRL); cerr != nil && err == nil {
				err = fmt.Errorf("cluster %q: %w", c.cfg.ID, cerr)
			}
		}
		return err
	}
}

// start subscribes every cluster's publisher to its material (a plug-in
// cluster's lineage, the default intermediate for a meshca-signs one) and
// runs it, on a controller-runtime manager of that cluster, as a
// singleton job: only the replica that holds the Lease writes. Call it
// after the fan-out's subscriptions (the CRLs cover a new chain before a
// cacerts Secret names it) and before the managers run.
func (cs meshClusters) start(ctx context.Context, def *intermediate.Manager, single *singletons, log *slog.Logger) error {
	for _, c := range cs {
		src := def
		if c.lineage != nil {
			src = c.lineage.m
		}
		pub := c.pub
		src.Subscribe(func(ctx context.Context, ch rotation.Change) error { return pub.setMaterial(ctx, ch.Active) })
		pub.mu.Lock()
		err := pub.p.Update(ctx, pub.d)
		pub.started = err == nil
		pub.mu.Unlock()
		if err != nil {
			return fmt.Errorf("clusters: cluster %q: %w", c.cfg.ID, err)
		}
		c.run(single, log)
	}
	return nil
}

// run runs the cluster's publisher on a manager of its own (no Lease of
// its own, no metrics or health servers), rebuilt for every term of the
// local Lease, retrying while the cluster's apiserver cannot be reached.
func (c *meshCluster) run(single *singletons, log *slog.Logger) {
	log = log.With("cluster", c.cfg.ID)
	ctrls := []kubesigner.Controller{trustController{c.pub.p}}
	single.Go("cluster-"+c.cfg.ID, func(ctx context.Context) {
		for ctx.Err() == nil {
			mgr, err := newManager(ctx, log, c.rc, kubesigner.ManagerOptions{Log: log}, ctrls)
			if err == nil {
				log.Info("publishing trust material to the cluster", "mode", c.cfg.Mode, "istio_namespace", c.cfg.IstioNamespace)
				err = mgr.Start(ctx)
			}
			if ctx.Err() != nil {
				return
			}
			log.Error("trust publishing for the cluster stopped; restarting", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(managerRetry.Cap):
			}
		}
	})
}
