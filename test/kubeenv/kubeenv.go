// Package kubeenv runs a real kube-apiserver and etcd for meshca's
// integration tests, through controller-runtime's envtest.
//
// It owns the test control plane only: starting it from the binaries that
// test/tools/testbin.sh builds from source (bin/k8s-1.37.2 in the repository
// root, or the folder named by KUBEBUILDER_ASSETS), installing CRDs, and
// offering small helpers that tests need because no controllers run: minting
// ServiceAccount tokens, acting as a ServiceAccount, creating Namespaces,
// Nodes and Pods as plain objects, and applying manifests. It must not hold
// any meshca logic.
//
// Everything listens on loopback only. When the binaries are missing, Start
// fails with a message that says to run `make testbin`; tests never skip.
package kubeenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshca/meshca/test/reporoot"
)

// KubeVersion is the Kubernetes version that test/tools/testbin.sh builds.
const KubeVersion = "1.37.2"

// assetsEnv names the folder holding kube-apiserver and etcd; it overrides
// the default bin/k8s-<KubeVersion> in the repository root.
const assetsEnv = "KUBEBUILDER_ASSETS"

// Env is a running test control plane.
type Env struct {
	// Config authenticates as an admin (group system:masters) with a client
	// certificate. Copy it with rest.CopyConfig before changing it.
	Config *rest.Config
	// Client is a typed clientset for Config.
	Client kubernetes.Interface
	// CtrlClient is a controller-runtime client for Config, using Scheme.
	CtrlClient client.Client
	// Scheme knows client-go's built-in types and apiextensions/v1, plus
	// whatever WithScheme added.
	Scheme *runtime.Scheme
	// CRDs are the CustomResourceDefinitions that Start installed.
	CRDs []*apiextensionsv1.CustomResourceDefinition

	env     *envtest.Environment
	workDir string
}

type options struct {
	assets        string
	crdDirs       []string
	noDefaultCRDs bool
	apiServerArgs map[string]string
	schemeAdders  []func(*runtime.Scheme) error
	startTimeout  time.Duration
	output        io.Writer
}

// Option configures Start.
type Option func(*options)

// WithCRDDirs installs the CRDs found in dirs (in addition to the default
// ones). A dir that does not exist is an error.
func WithCRDDirs(dirs ...string) Option {
	return func(o *options) { o.crdDirs = append(o.crdDirs, dirs...) }
}

// WithoutDefaultCRDs skips installing cert-manager's CRDs and the
// repository's deploy/crds.
func WithoutDefaultCRDs() Option {
	return func(o *options) { o.noDefaultCRDs = true }
}

// WithAPIServerFlag sets a kube-apiserver flag (name without the leading
// dashes), e.g. WithAPIServerFlag("feature-gates", "Foo=true").
func WithAPIServerFlag(name, value string) Option {
	return func(o *options) { o.apiServerArgs[name] = value }
}

// WithScheme adds types to Env.Scheme, e.g. certmanagerv1.AddToScheme.
func WithScheme(add func(*runtime.Scheme) error) Option {
	return func(o *options) { o.schemeAdders = append(o.schemeAdders, add) }
}

// WithAssetsDir uses kube-apiserver and etcd from dir instead of
// KUBEBUILDER_ASSETS or bin/k8s-<KubeVersion>.
func WithAssetsDir(dir string) Option {
	return func(o *options) { o.assets = dir }
}

// WithStartTimeout bounds the start of each control-plane process
// (default 60s).
func WithStartTimeout(d time.Duration) Option {
	return func(o *options) { o.startTimeout = d }
}

// WithOutput copies the output of etcd and kube-apiserver to w. Setting
// KUBEBUILDER_ATTACH_CONTROL_PLANE_OUTPUT=true sends it to stdout/stderr.
func WithOutput(w io.Writer) Option {
	return func(o *options) { o.output = w }
}

// Start starts etcd and kube-apiserver on loopback, waits until the
// apiserver serves, and installs CRDs: cert-manager's (from its Go module)
// and the repository's deploy/crds when that folder exists.
func Start(opts ...Option) (*Env, error) {
	o := &options{
		apiServerArgs: map[string]string{},
		startTimeout:  60 * time.Second,
	}
	for _, opt := range opts {
		opt(o)
	}

	assets, err := assetsDir(o.assets)
	if err != nil {
		return nil, err
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	for _, add := range o.schemeAdders {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("kubeenv: adding to scheme: %w", err)
		}
	}

	crdDirs := append([]string(nil), o.crdDirs...)
	if !o.noDefaultCRDs {
		defaults, err := defaultCRDDirs()
		if err != nil {
			return nil, err
		}
		crdDirs = append(crdDirs, defaults...)
	}

	// The apiserver's certificates, ServiceAccount signing key and client CA
	// live in a folder that we own (not one envtest allocates and deletes on
	// stop) so that StopAPIServer/RestartAPIServer keep them.
	workDir, err := os.MkdirTemp("", "meshca-kubeenv-")
	if err != nil {
		return nil, fmt.Errorf("kubeenv: %w", err)
	}
	certDir := filepath.Join(workDir, "apiserver")
	dataDir := filepath.Join(workDir, "etcd")
	for _, d := range []string{certDir, dataDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			_ = os.RemoveAll(workDir)
			return nil, fmt.Errorf("kubeenv: %w", err)
		}
	}

	apiServer := &envtest.APIServer{
		Path:    filepath.Join(assets, "kube-apiserver"),
		CertDir: certDir,
	}
	apiServer.SecureServing.Address = "127.0.0.1"
	args := apiServer.Configure()
	args.Set("advertise-address", "127.0.0.1")
	args.Set("endpoint-reconciler-type", "none")
	// Stop within envtest's 20 s stop timeout even with watches open (the
	// default 60 s grace period makes StopAPIServer time out and kill).
	args.Set("shutdown-watch-termination-grace-period", "1s")
	for k, v := range o.apiServerArgs {
		args.Set(k, v)
	}
	etcd := &envtest.Etcd{
		Path:    filepath.Join(assets, "etcd"),
		DataDir: dataDir,
	}
	if o.output != nil {
		apiServer.Out, apiServer.Err = o.output, o.output
		etcd.Out, etcd.Err = o.output, o.output
	}

	// envtest logs through controller-runtime's global logger; without one
	// it prints a stack trace ("log.SetLogger(...) was never called") into
	// every test and benchmark. The control plane's own output goes to
	// WithOutput.
	ctrllog.SetLogger(logr.Discard())
	te := &envtest.Environment{
		ControlPlane:             envtest.ControlPlane{APIServer: apiServer, Etcd: etcd},
		BinaryAssetsDirectory:    assets,
		Scheme:                   scheme,
		CRDDirectoryPaths:        crdDirs,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: o.startTimeout,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	cfg, err := te.Start()
	if err != nil {
		_ = te.Stop()
		_ = os.RemoveAll(workDir)
		return nil, fmt.Errorf("kubeenv: starting kube-apiserver %s and etcd from %s: %w", KubeVersion, assets, err)
	}

	e := &Env{Config: cfg, Scheme: scheme, CRDs: te.CRDs, env: te, workDir: workDir}
	if e.Client, err = kubernetes.NewForConfig(cfg); err == nil {
		e.CtrlClient, err = client.New(cfg, client.Options{Scheme: scheme})
	}
	if err != nil {
		e.Stop()
		return nil, fmt.Errorf("kubeenv: %w", err)
	}
	return e, nil
}

// Stop stops the apiserver and etcd and deletes their data. It is safe to
// call more than once.
func (e *Env) Stop() {
	if e == nil || e.env == nil {
		return
	}
	if err := e.env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "kubeenv: stopping control plane: %v\n", err)
	}
	_ = os.RemoveAll(e.workDir)
	e.env = nil
}

// StopAPIServer stops kube-apiserver only, for outage tests: clients get
// "connection refused" on the same address until RestartAPIServer.
func (e *Env) StopAPIServer() error {
	if err := e.env.ControlPlane.APIServer.Stop(); err != nil {
		return fmt.Errorf("kubeenv: stopping kube-apiserver: %w", err)
	}
	return nil
}

// RestartAPIServer starts kube-apiserver again after StopAPIServer and
// waits until it is healthy. It serves on the same address with the same
// serving certificate, client CA and ServiceAccount signing key, over the
// same etcd data, so Config, Client, CtrlClient, clients from ClientAs and
// tokens minted before the outage all keep working.
func (e *Env) RestartAPIServer() error {
	if err := e.env.ControlPlane.APIServer.Start(); err != nil {
		return fmt.Errorf("kubeenv: restarting kube-apiserver: %w", err)
	}
	return nil
}

// KubeConfig returns a kubeconfig for the admin Config, e.g. to hand to a
// meshca process started by a test.
func (e *Env) KubeConfig() []byte {
	return append([]byte(nil), e.env.KubeConfig...)
}

// AssetsDir returns the folder holding kube-apiserver and etcd: dir when
// set, else $KUBEBUILDER_ASSETS, else bin/k8s-<KubeVersion> in the
// repository root. It fails, telling to run `make testbin`, when either
// binary is missing.
func assetsDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv(assetsEnv)
	}
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "bin", "k8s-"+KubeVersion)
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("kubeenv: %s is missing (%s): run `make testbin` "+
				"(or `bash test/tools/testbin.sh`) to build kube-apiserver and etcd %s from source", p, statReason(err), KubeVersion)
		}
	}
	return dir, nil
}

func statReason(err error) string {
	if err == nil {
		return "not an executable file"
	}
	return err.Error()
}

// RepoRoot returns the folder holding meshca's go.mod.
func RepoRoot() (string, error) {
	dir, err := reporoot.Dir()
	if err != nil {
		return "", fmt.Errorf("kubeenv: %w", err)
	}
	return dir, nil
}

// defaultCRDDirs returns cert-manager's deploy/crds from its Go module and
// the repository's deploy/crds when it exists.
func defaultCRDDirs() ([]string, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	cm, err := moduleDir(root, "github.com/cert-manager/cert-manager")
	if err != nil {
		return nil, err
	}
	dirs := []string{filepath.Join(cm, "deploy", "crds")}
	own := filepath.Join(root, "deploy", "crds")
	if st, err := os.Stat(own); err == nil && st.IsDir() {
		dirs = append(dirs, own)
	}
	return dirs, nil
}

// moduleDir returns the module-cache folder of module mod at the version
// that the main module requires, downloading it from the proxy if needed.
func moduleDir(root, mod string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", mod)
	cmd.Dir = root
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil && err == nil {
		err = jerr
	}
	if err == nil && info.Error != "" {
		err = errors.New(info.Error)
	}
	if err == nil && info.Dir == "" {
		err = errors.New("no Dir in go mod download output")
	}
	if err != nil {
		return "", fmt.Errorf("kubeenv: locating module %s: %w: %s", mod, err, strings.TrimSpace(stderr.String()))
	}
	return info.Dir, nil
}
