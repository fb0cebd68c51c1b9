package inventory

import (
	"sort"

	"k8s.io/apimachinery/pkg/api/meta"
)

// CachedBundleNames are the names of the ClusterTrustBundles in the
// informer caches: what meshca holds, not what a scrape reports.
func (k *Kube) CachedBundleNames() []string {
	var out []string
	for _, inf := range k.bundles {
		for _, o := range inf.GetStore().List() {
			if m, err := meta.Accessor(o); err == nil {
				out = append(out, m.GetName())
			}
		}
	}
	sort.Strings(out)
	return out
}
