package certmanager

import (
	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/profile"
	"k8s.io/utils/clock"
)

// MaterialSource is the signing engine's active CA material (*authority.Authority).
type MaterialSource interface {
	Material() *authority.Material
}

// EngineCheck is the issuers' health check against the engine: whether it
// could sign a certificate of profile p now, without signing one. An error
// is a *caerr.Error: transient (kubesigner.Transient) while the CA has no
// material or its intermediate has expired and awaits rotation, permanent
// when the CA can never issue p.
func EngineCheck(src MaterialSource, clk clock.PassiveClock) func(p profile.Name) error {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return func(p profile.Name) error {
		m := src.Material()
		if m == nil || m.Bundle == nil || m.Bundle.Cert == nil {
			return caerr.New(caerr.Unavailable, "ca_not_ready", "the CA has no signing material yet")
		}
		if now := clk.Now(); now.After(m.Bundle.Cert.NotAfter) {
			return caerr.New(caerr.FailedPrecondition, "issuer_expired", "the signing intermediate expired at %s and awaits rotation",
				m.Bundle.Cert.NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
		}
		if p != "" {
			if err := m.Profile.CheckLeaf(p); err != nil {
				return caerr.New(caerr.InvalidArgument, authority.ReasonProfileNotSupported, "%v", err)
			}
		}
		return nil
	}
}
