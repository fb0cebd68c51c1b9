package authn

import (
	"fmt"
	"maps"
	"slices"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// DefaultClusterID is the cluster name istio-agent sends in the "clusterid"
// header when ISTIO_META_CLUSTER_ID is unset.
const DefaultClusterID = "Kubernetes"

// Client-side rate limits that TuneRESTConfig sets when a rest.Config has
// none. client-go's defaults (5 QPS, burst 10) would throttle TokenReviews
// to a crawl when a mesh restarts at once.
const (
	DefaultClientQPS   = 100
	DefaultClientBurst = 200
)

// Clusters maps the clusterid header to the apiserver that reviews tokens
// and holds the pods of that cluster. One cluster is local: an empty
// clusterid means it, as does its own name.
type Clusters struct {
	local   string
	clients map[string]kubernetes.Interface
}

// NewClusters returns the cluster set. local is the local cluster's name
// (empty means DefaultClusterID); localClient may be nil when meshca does
// not run in a cluster, and then an empty clusterid is an unknown cluster.
// remotes maps each other cluster's ID to its client.
func NewClusters(local string, localClient kubernetes.Interface, remotes map[string]kubernetes.Interface) (*Clusters, error) {
	if local == "" {
		local = DefaultClusterID
	}
	c := &Clusters{local: local, clients: map[string]kubernetes.Interface{}}
	if localClient != nil {
		c.clients[local] = localClient
	}
	for id, cl := range remotes {
		switch {
		case id == "":
			return nil, fmt.Errorf("authn: a remote cluster has an empty cluster ID")
		case id == local:
			return nil, fmt.Errorf("authn: remote cluster %q has the local cluster's name", id)
		case cl == nil:
			return nil, fmt.Errorf("authn: remote cluster %q has no client", id)
		}
		c.clients[id] = cl
	}
	if len(c.clients) == 0 {
		return nil, fmt.Errorf("authn: no clusters: give a local client or at least one remote")
	}
	return c, nil
}

// LoadClusters is NewClusters with the remotes read from kubeconfig files
// (cluster ID → path). Each remote's rest.Config goes through
// TuneRESTConfig and then configure (when not nil), e.g. to wrap its
// transport.
func LoadClusters(local string, localClient kubernetes.Interface, remoteKubeconfigs map[string]string, configure func(clusterID string, cfg *rest.Config)) (*Clusters, error) {
	remotes := make(map[string]kubernetes.Interface, len(remoteKubeconfigs))
	for _, id := range slices.Sorted(maps.Keys(remoteKubeconfigs)) {
		cfg, err := clientcmd.BuildConfigFromFlags("", remoteKubeconfigs[id])
		if err != nil {
			return nil, fmt.Errorf("authn: kubeconfig of cluster %q: %w", id, err)
		}
		TuneRESTConfig(cfg)
		if configure != nil {
			configure(id, cfg)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("authn: client for cluster %q: %w", id, err)
		}
		remotes[id] = cs
	}
	return NewClusters(local, localClient, remotes)
}

// TuneRESTConfig sets client-side limits fit for a TokenReview burst
// (DefaultClientQPS, DefaultClientBurst) and a user agent, where cfg has
// none. Apply it to the local cluster's config too.
func TuneRESTConfig(cfg *rest.Config) {
	if cfg.QPS == 0 {
		cfg.QPS = DefaultClientQPS
	}
	if cfg.Burst == 0 {
		cfg.Burst = DefaultClientBurst
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "meshca"
	}
}

// Local returns the local cluster's name.
func (c *Clusters) Local() string { return c.local }

// Names returns the configured cluster IDs, sorted.
func (c *Clusters) Names() []string { return slices.Sorted(maps.Keys(c.clients)) }

// Clients returns a copy of the cluster ID → client map, e.g. for the
// impersonation package's pod informers.
func (c *Clusters) Clients() map[string]kubernetes.Interface { return maps.Clone(c.clients) }

// Lookup resolves a clusterid header value: empty means the local cluster.
// It returns the cluster's name and client, or ok=false for an unknown
// cluster.
func (c *Clusters) Lookup(clusterID string) (name string, client kubernetes.Interface, ok bool) {
	if clusterID == "" {
		clusterID = c.local
	}
	client, ok = c.clients[clusterID]
	return clusterID, client, ok
}
