// Package bundleversion finds which version of the ClusterTrustBundle API
// (certificates.k8s.io/v1, GA in Kubernetes 1.37, or v1beta1 in 1.33–1.36;
// KEP-3257) a cluster serves. The trust publisher writes meshca's bundles
// in that version and the certificate inventory watches them in it.
package bundleversion

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/utils/clock"
)

// Discover returns the version of certificates.k8s.io that serves
// clustertrustbundles, preferring v1, or "" when none does.
func Discover(d discovery.DiscoveryInterface) (string, error) {
	for _, v := range []string{"v1", "v1beta1"} {
		res, err := d.ServerResourcesForGroupVersion("certificates.k8s.io/" + v)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("discovering certificates.k8s.io/%s: %w", v, err)
		}
		for _, r := range res.APIResources {
			if r.Name == "clustertrustbundles" {
				return v, nil
			}
		}
	}
	return "", nil
}

// Backoff spaces attempts while the apiserver cannot be reached (or, just
// restarted, refuses discovery until its authorizer is ready): 200ms,
// doubling up to 30s.
var Backoff = wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Steps: math.MaxInt32, Cap: 30 * time.Second}

// Wait calls Discover until it answers, waiting Backoff on clk between
// attempts and logging each failure. It returns ctx's error if ctx ends
// first.
func Wait(ctx context.Context, d discovery.DiscoveryInterface, clk clock.Clock, log *slog.Logger) (string, error) {
	retry := Backoff.DelayFunc()
	for {
		v, err := Discover(d)
		if err == nil {
			return v, nil
		}
		delay := retry()
		log.Warn("ClusterTrustBundle discovery failed; retrying", "in", delay, "error", err)
		t := clk.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		case <-t.C():
		}
	}
}
