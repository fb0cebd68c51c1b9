package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/issuer/server"
)

func newServeCommand(g *globals) *cobra.Command {
	var listen, opsListen string
	var limits config.LimitsConfig
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the meshca service",
		Long: `serve runs meshca: it loads (or mints) the signing intermediate, opens the
store, and serves

  --listen       istio.v1.auth.IstioCertificateService over TLS, with a
                 serving certificate meshca issues to itself (istiod's CA
                 port is 15012)
  --ops-listen   /healthz, /readyz, /metrics (Prometheus) and, unless
                 crl.listen gives it a port of its own, the CRL distribution
                 point /crl/<scope>.crl (DER), /crl/<scope>-delta.crl,
                 /crl/<scope>.pem and /crl/ca-crl.pem

and, on the Unix socket server.adminSocket (default admin.sock next to the
store, mode 0600), the local admin endpoint through which 'meshca records',
'sign', 'cacerts', 'revoke', 'revocations', 'crl fetch', 'rotate' and
'status' work while serve holds the store; with server.adminListen the same API (without sign) over
TLS for remote admins (admin client certificates or Kubernetes RBAC).

Without a cluster, callers authenticate with client certificates that
meshca issued ('meshca sign'). With kubernetes.kubeconfig or
kubernetes.inCluster in the configuration it also reviews ServiceAccount
tokens (audience istio-ca), lets ztunnel impersonate the pods on its node,
and, with trustBundle.enabled, publishes the roots, the PQ trust anchor and
optionally Istio's cacerts Secret, with ca-crl.pem (the CRL of every CA in
the chain) in the Secret and the istio-ca-crl ConfigMaps. It rebuilds the
CRLs at start, after every revocation and before their nextUpdate, prunes
expired issuance records in the background and shuts down gracefully on
SIGINT or SIGTERM. With bundleEndpoint.address it also serves the trust
domain's SPIFFE bundle over HTTPS (profile https_web or https_spiffe).`,
		Example: `  meshca serve --dir ./.meshca --listen 127.0.0.1:15012 --ops-listen 127.0.0.1:15014
  meshca serve --config /etc/meshca/meshca.yaml
  curl -s localhost:15014/readyz`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			setServeRuntime()
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("listen") {
				cfg.Server.Listen = listen
			}
			if cmd.Flags().Changed("ops-listen") {
				cfg.Server.OpsListen = opsListen
			}
			applyLimitFlags(cmd, &cfg.Server.Limits, limits)
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			log := newLogger(os.Stderr, cfg.Log.Level, cfg.Log.Format)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// A part that must not stop alone (the Kubernetes controllers)
			// ends serve through fail.
			ctx, fail := context.WithCancelCause(ctx)
			defer fail(nil)

			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			log, audf, err := openAuditFile(cfg, log, reg)
			if err != nil {
				return err
			}
			defer audf.close()
			// The operations port serves from here on: opening the CA
			// can take long (a Vault login, the first intermediate, or a
			// replica without the Lease waiting for the holder's), and
			// meanwhile the kubelet's probes should see a live process
			// that is not ready, and Prometheus its metrics.
			ops, err := server.NewOps(server.OpsOptions{Listen: cfg.Server.OpsListen, Gatherer: reg, Registerer: reg, Log: log, Limits: cfg.Server.Limits, Ready: errStarting})
			if err != nil {
				return err
			}
			defer ops.Close()
			// The gRPC port too, before anything is minted or recorded
			// (the serving certificate): a port conflict fails first.
			grpcLn, err := server.ListenGRPC(cfg.Server.Listen)
			if err != nil {
				return err
			}
			grpcOwned := false
			defer func() {
				if !grpcOwned {
					grpcLn.Close()
				}
			}()
			// The CRLs answer 503 with Retry-After until they are built,
			// on crl.listen when set, else on the ops port.
			crlHost := ops
			if cfg.CRL.Listen != "" {
				if crlHost, err = server.NewOps(server.OpsOptions{Name: "crl", Key: "crl.listen", Listen: cfg.CRL.Listen, Log: log, Limits: cfg.Server.Limits, RoutesOnly: true}); err != nil {
					return err
				}
				defer crlHost.Close()
			}
			serveCRLs := crlHost.HandleLater("GET /crl/")
			ops.Start()
			crlHost.Start()
			rc, err := restConfig(cfg.Kubernetes)
			if err != nil {
				return err
			}
			// With several replicas the singleton jobs run only on the
			// holder of one Lease; every replica serves signing.
			single, err := startSingletons(ctx, cfg, rc, log, reg, fail)
			if err != nil {
				return err
			}
			defer func() {
				fail(nil)
				single.wait()
			}()
			rt, rot, err := openCA(ctx, cfg, log, reg, single.rotationOptions)
			if err != nil {
				return err
			}
			defer rt.Close()
			defer audf.signWith(rt)() // sealed before the key closes
			// The singleton jobs (the pruner, the alert rules, …) use the
			// store: they stop before it closes, also when start is
			// refused after this point. (Stopping twice is harmless.)
			defer func() {
				fail(nil)
				single.wait()
			}()
			rot.single = single
			if rot.lineages, err = openSignerLineages(ctx, cfg, rt, rot, log, reg); err != nil {
				return err
			}
			clusters, err := openClusters(ctx, cfg, rt, rot, rc, log, reg)
			if err != nil {
				return err
			}

			alerting, err := startAlerts(ctx, cfg, rt.Store, log, reg, single)
			if err != nil {
				return err
			}
			inv, err := registerInventory(ctx, cfg, rt, rc, log, reg)
			if err != nil {
				return err
			}
			m := rt.Authority.Material()
			trust, err := newTrustPublisher(cfg, rc, m, log, reg, alerting.publishOptions()...)
			if err != nil {
				return err
			}
			if err := startFederation(ctx, federationDeps{cfg: cfg, trust: trust, clusters: clusters, alerting: alerting, single: single, log: log, reg: reg}); err != nil {
				return err
			}
			// Every CRL is rebuilt before anything is served or published,
			// so that a revocation acknowledged before a crash is in effect.
			crls, err := newCRLManager(ctx, cfg, rt, clusters.withCRLs(trust.setCRLs), log, reg)
			if err != nil {
				return err
			}
			// The client-certificate authenticator asks the CRL manager on
			// every request: a revoked certificate neither authenticates nor renews.
			door, err := newIstioFrontDoor(ctx, cfg, rt, rot.lineages, rc, crls, log, reg)
			if err != nil {
				return err
			}
			var moreOps []*server.Ops
			if crlHost != ops {
				moreOps = append(moreOps, crlHost) // drained with ops, not cut by the Close above
			}
			srv, err := server.New(server.Options{
				GRPCListener:    grpcLn,
				Ops:             ops,
				MoreOps:         moreOps,
				ShutdownTimeout: cfg.Server.ShutdownTimeout.Duration,
				Registerer:      reg,
				Ready:           readiness(rt),
				Log:             log,
				Audit:           audit.New(log),
				Limits:          cfg.Server.Limits,
				Creds:           door.creds,
			})
			if err != nil {
				return err
			}
			grpcOwned = true // srv's: Run serves it and closes it on shutdown
			door.service.Register(srv.GRPC)
			serveCRLs(crls.Handler())
			// Every replica on a shared store, the Lease holder too, reads
			// the revocations other processes recorded in it, so that a
			// revoked client certificate stops authenticating here and
			// this replica's CRLs list it.
			single.followStore(cfg.Store.Type == config.StorePostgres, "revocations", log, crls.Follow)
			// Every replica rebuilds its CRLs after revocations (a
			// follower learns them from the store) and republishes them,
			// with CRL numbers from the store; only the Lease holder
			// revokes and publishes them to the cluster.
			go func() {
				if err := crls.Run(ctx); err != nil {
					log.Error("CRL manager stopped", "error", err)
				}
			}()
			if single.el != nil {
				// Taking over: every CRL is rebuilt from the store's
				// revocations, those the previous holder acknowledged included.
				single.Go("crl-takeover", func(ctx context.Context) {
					if err := crls.Start(ctx); err != nil {
						log.Error("rebuilding the CRLs on taking the lease failed; Run retries", "error", err)
					}
				})
			}
			startRules(alerting, single, ruleDeps{cfg: cfg, rt: rt, inv: inv, crl: crls, reporters: rot.reporters(), lineages: rot.lineages, log: log})
			pruned := prometheus.NewCounter(prometheus.CounterOpts{
				Name: "meshca_store_pruned_records_total",
				Help: "Expired issuance records deleted by the retention job.",
			})
			reg.MustRegister(pruned)
			pruner := &store.Pruner{
				Records: rt.Store, Retention: cfg.Store.Retention.Duration, Interval: cfg.Store.PruneInterval.Duration,
				Log: log, Pruned: func(n int) { pruned.Add(float64(n)) },
			}
			single.Go("prune", pruner.Run)
			adm, err := startAdmin(ctx, adminDeps{cfg: cfg, rt: rt, crl: crls, single: single, door: door, rc: rc, log: log, reg: reg, inventory: inv.sources, rotation: rot.reporters(), rotations: rot})
			if err != nil {
				return err
			}
			defer adm.Close()
			stopBundle, err := startBundleEndpoint(ctx, cfg, rt, single, log, reg)
			if err != nil {
				return err
			}
			defer stopBundle()
			if err := trust.start(ctx, cfg); err != nil {
				return err
			}
			orphans, err := rot.lineages.orphanIssuers(ctx, rt, log)
			if err != nil {
				return err
			}
			fan := &fanout{
				authority: rt.Authority, crls: crls, rootSource: rt.Root, trust: trust, serving: door.serving,
				anchorPath: authority.PQAnchorPath(cfg), log: log, def: rot.m, lineages: rot.lineages, orphans: orphans,
			}
			subscribeRotation(ctx, rot.m, fan)
			rot.lineages.subscribe(fan)
			if err := clusters.start(ctx, rot.m, single, log); err != nil {
				return err
			}
			go rot.m.Run(ctx)
			rot.lineages.run(ctx)
			runRootRotation(ctx, rot, alerting)
			cd := controllerDeps{cfg: cfg, rt: rt, rc: rc, log: log, reg: reg, single: single}
			controllers, err := kubeControllers(cd)
			if err != nil {
				return err
			}
			if c := trust.controller(); c != nil {
				controllers = append(controllers, c)
			}
			waitControllers, err := startControllers(ctx, cd, controllers, fail)
			if err != nil {
				return err
			}
			// Shutdown waits for the controllers to stop, so that the
			// Lease is released for another replica.
			defer func() {
				fail(nil)
				waitControllers()
			}()
			log.Info("meshca ready",
				"trust_domain", cfg.TrustDomain, "generation", m.Generation, "compliance", cfg.Server.Compliance,
				"serving_names", cfg.Server.DNSNames, "authenticators", door.authenticators,
				"intermediate_not_after", m.Bundle.Cert.NotAfter, "store", cfg.Store.Describe(), "admin_socket", adm.Path())
			if err := srv.Run(ctx); err != nil {
				return err
			}
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
				return cause
			}
			return nil
		},
	}
	addCAFlags(cmd, g)
	cmd.Flags().StringVar(&listen, "listen", "", "gRPC signing address (default from config, else :15012)")
	cmd.Flags().StringVar(&opsListen, "ops-listen", "", "health and metrics address (default from config, else :15014)")
	addLimitFlags(cmd, &limits)
	return cmd
}

// errStarting is serve's readiness until its listeners serve signing.
func errStarting() error {
	return errors.New("starting: opening the CA (a replica that does not hold the Lease waits for the holder's first intermediate)")
}

// readiness is ready while the store accepts writes and the active
// intermediate is within its validity.
func readiness(rt *authority.Runtime) server.ReadyFunc {
	return func() error {
		if h, ok := rt.Store.(interface{ Healthy() error }); ok {
			if err := h.Healthy(); err != nil {
				return err
			}
		}
		m := rt.Authority.Material()
		if m == nil {
			return errors.New("no signing material")
		}
		now := time.Now()
		if now.After(m.Bundle.Cert.NotAfter) {
			return fmt.Errorf("signing intermediate expired at %s", m.Bundle.Cert.NotAfter.UTC().Format(time.RFC3339))
		}
		return nil
	}
}

// serveGCPercent is serve's garbage-collection target unless GOGC is set:
// issuance allocates short-lived garbage around a small live heap, and the
// Go default (100) spends about a fifth of the CPU of an issuance
// collecting it. 400 trades some tens of MiB of heap for that CPU.
const serveGCPercent = 400

// memoryLimitShare is the share of the container's memory limit that
// serve gives the Go runtime as its soft limit (unless GOMEMLIMIT is set):
// near the limit the collector runs as often as it must, whatever the GC
// target, so a burst of garbage is collected instead of OOM-killed.
const memoryLimitShare = 0.9

// cgroupMemoryFiles hold the container's memory limit (cgroup v2, then v1).
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// setServeRuntime tunes the Go runtime for serve; an operator's GOGC,
// GOMEMLIMIT and GOMAXPROCS win:
//
//   - the GC target serveGCPercent, with a soft memory limit of
//     memoryLimitShare of the container's memory limit;
//   - more Ps than the runtime's default (serveProcs).
func setServeRuntime() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(serveGCPercent)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		if limit, ok := containerMemoryLimit(cgroupMemoryFiles); ok {
			debug.SetMemoryLimit(int64(float64(limit) * memoryLimitShare))
		}
	}
	if _, set := os.LookupEnv("GOMAXPROCS"); !set {
		runtime.GOMAXPROCS(serveProcs(runtime.GOMAXPROCS(0), runtime.NumCPU()))
	}
}

// serveProcs is the number of Ps serve runs with, from the runtime's
// default (the CPUs, or the container's CPU limit rounded up) and the
// CPUs the process may run on. A P whose goroutine is in a system call
// (the journal's write and its sync, a socket write) is handed to other
// goroutines only once the scheduler's monitor notices, and every
// hand-off wakes a thread; spare Ps let ready goroutines run at once
// instead. The threads in those calls sleep in the kernel, so the spare
// Ps add little CPU.
//
//   - Without a CPU limit: serveExtraProcs more. On the 2-core bench
//     machine 6 Ps against 3 raised issuance at 16 callers from about
//     1.08x istiod's rate to 1.20x, and at 64 from 1.29x to 1.41x, with
//     less CPU per certificate.
//   - Under a CPU limit (default below the CPUs): one more, not more:
//     Ps that compute at once on more cores than the limit spend the
//     period's CPU quota early and are throttled for the rest of it.
//
// Setting GOMAXPROCS stops the runtime's tracking of CPU-limit changes.
func serveProcs(def, cpus int) int {
	if def < cpus {
		return def + 1
	}
	return def + serveExtraProcs
}

// serveExtraProcs is how many Ps serve adds when no CPU limit applies.
const serveExtraProcs = 4

// containerMemoryLimit reads the first memory limit of files that is a
// number ("max" and cgroup v1's "no limit" value, above 2^62, are none).
func containerMemoryLimit(files []string) (uint64, bool) {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || v == 0 || v >= 1<<62 {
			continue
		}
		return v, true
	}
	return 0, false
}
