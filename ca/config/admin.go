package config

import (
	"net"
	"slices"

	"github.com/meshca/meshca/ca/identity"
)

// DefaultAdminTokenAudience is the audience of the Kubernetes tokens the
// admin TCP listener accepts: a token minted for it
// (kubectl create token --audience meshca-admin) is good for nothing else,
// and a token for the apiserver or istio-ca is refused.
const DefaultAdminTokenAudience = "meshca-admin"

func (s *ServerConfig) initAdmin() {
	if len(s.AdminTokenAudiences) == 0 {
		s.AdminTokenAudiences = []string{DefaultAdminTokenAudience}
	}
}

// validateAdmin checks server.adminListen and the admin identities; kube
// says whether a cluster is configured (for token authentication).
func (s ServerConfig) validateAdmin(trustDomain string, kube bool, add func(string, string, ...any)) {
	for _, id := range s.AdminIdentities {
		td, err := identity.TrustDomain(trustDomain)
		if err != nil {
			return // reported under trustDomain
		}
		u, err := identity.Parse(id)
		if err == nil {
			err = identity.CheckWorkload(u, td)
		}
		if err != nil {
			add("server.adminIdentities", "%q: %v; list the SPIFFE IDs of the admins' client certificates, e.g. spiffe://%s/ns/meshca-admins/sa/alice", id, err, trustDomain)
		}
	}
	if slices.Contains(s.AdminTokenAudiences, "") {
		add("server.adminTokenAudiences", "must not hold an empty audience (default [%s])", DefaultAdminTokenAudience)
	}
	if s.AdminListen == "" {
		return
	}
	_, port, err := net.SplitHostPort(s.AdminListen)
	if err != nil {
		add("server.adminListen", "%q is not host:port (e.g. :15443); leave it empty to serve the admin API on server.adminSocket only", s.AdminListen)
	}
	for _, kv := range [][2]string{{"server.listen", s.Listen}, {"server.opsListen", s.OpsListen}} {
		if kv[1] == s.AdminListen && port != "0" {
			add("server.adminListen", "%q is also %s; give the admin API its own port", s.AdminListen, kv[0])
		}
	}
	if len(s.AdminIdentities) == 0 && !kube {
		add("server.adminListen", "no one could use it: list admin SPIFFE IDs in server.adminIdentities (mTLS with certificates meshca issues), or configure kubernetes (kubeconfig or inCluster) for Kubernetes tokens authorized by RBAC on meshca.io resources")
	}
}
