package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/storeopen"
	"github.com/meshca/meshca/issuer/admin"
)

// remoteFlags select a remote meshca's admin TCP listener
// (server.adminListen) instead of the local store or socket.
type remoteFlags struct {
	address    string
	cert, key  string
	caFile     string
	tokenFile  string
	serverName string
	output     string
}

func addRemoteFlags(cmd *cobra.Command, f *remoteFlags) {
	cmd.Flags().StringVar(&f.address, "admin-address", "", "host:port of a remote meshca's admin listener (server.adminListen); default: the --dir/--config store, or its running serve's admin socket")
	cmd.Flags().StringVar(&f.cert, "cert", "", "with --admin-address: admin client certificate (PEM chain minted with 'meshca sign', not from the Istio port; its SPIFFE ID in server.adminIdentities)")
	cmd.Flags().StringVar(&f.key, "key", "", "with --admin-address: the client certificate's private key (PEM)")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", "", "with --admin-address: file holding a Kubernetes token (kubectl create token SA --audience meshca-admin), authorized by RBAC on meshca.io")
	cmd.Flags().StringVar(&f.caFile, "ca", "", "with --admin-address: the mesh roots that verify the server (default: root-cert.pem of --dir)")
	cmd.Flags().StringVar(&f.serverName, "server-name", "", "with --admin-address: TLS server name (default: the host of --admin-address; one of server.dnsNames)")
}

func addOutputFlag(cmd *cobra.Command, f *remoteFlags) {
	cmd.Flags().StringVarP(&f.output, "output", "o", "table", "output format: table or json")
}

func (f *remoteFlags) json() (bool, error) {
	switch f.output {
	case "table", "":
		return false, nil
	case "json":
		return true, nil
	}
	return false, fmt.Errorf("--output %q: use table or json", f.output)
}

// adminTarget is where a command finds the CA: a remote or local admin
// endpoint (client), or the store itself when no server holds it.
type adminTarget struct {
	client *admin.Client
	store  store.Store
	cfg    *config.Config
}

func (t *adminTarget) Close() error {
	if t.client != nil {
		return t.client.Close()
	}
	if t.store != nil {
		return t.store.Close()
	}
	return nil
}

// openTarget connects to --admin-address, or opens the store of
// --dir/--config; when a running meshca serve holds it (bbolt), or answers
// on the admin socket (PostgreSQL, which no process holds), it uses that
// server's admin socket, so that revocations, rotations and CRLs go
// through the service that acts on them.
func openTarget(g *globals, f *remoteFlags) (*adminTarget, error) {
	if f.address != "" {
		c, err := f.remoteClient(g)
		if err != nil {
			return nil, err
		}
		return &adminTarget{client: c}, nil
	}
	if f.cert != "" || f.key != "" || f.tokenFile != "" || f.caFile != "" || f.serverName != "" {
		return nil, errors.New("--cert, --key, --token-file, --ca and --server-name need --admin-address")
	}
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	if c, ok := runningServe(cfg, true); ok {
		return &adminTarget{client: c, cfg: cfg}, nil
	}
	st, err := storeopen.OpenExisting(context.Background(), cfg.Store, newLogger(os.Stderr, cfg.Log.Level, cfg.Log.Format))
	if errors.Is(err, storeopen.ErrLocked) {
		c, err := serveClient(cfg)
		if err != nil {
			return nil, err
		}
		return &adminTarget{client: c, cfg: cfg}, nil
	}
	if err != nil {
		return nil, g.explainNoStore(err)
	}
	return &adminTarget{store: st, cfg: cfg}, nil
}

// runningServe is a client of the admin socket of cfg when a meshca serve
// answers on it and, for a bbolt store, another process holds the store
// now: the evidence a store that Open finds locked gives, without waiting
// out Open's lock timeout (2 s). withPostgres: for PostgreSQL, which no
// process holds, whether the socket answering is enough.
func runningServe(cfg *config.Config, withPostgres bool) (*admin.Client, bool) {
	if cfg.Store.Type == config.StorePostgres {
		if !withPostgres {
			return nil, false
		}
	} else if !storeopen.HeldByAnother(cfg.Store) {
		return nil, false
	}
	return liveServe(cfg)
}

// liveServe is a client of the admin socket of cfg when a meshca serve
// answers on it.
func liveServe(cfg *config.Config) (*admin.Client, bool) {
	c := admin.NewClient(cfg.Server.AdminSocket)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Check(ctx); err != nil {
		_ = c.Close()
		return nil, false
	}
	return c, true
}

func (f *remoteFlags) remoteClient(g *globals) (*admin.Client, error) {
	host, _, err := net.SplitHostPort(f.address)
	if err != nil {
		return nil, fmt.Errorf("--admin-address %q is not host:port", f.address)
	}
	hasCert := f.cert != "" || f.key != ""
	switch {
	case hasCert && (f.cert == "" || f.key == ""):
		return nil, errors.New("--cert and --key go together")
	case hasCert && f.tokenFile != "":
		return nil, errors.New("use either --cert/--key or --token-file, not both")
	case !hasCert && f.tokenFile == "":
		return nil, errors.New("--admin-address needs credentials: --cert and --key (an admin client certificate), or --token-file (a Kubernetes token)")
	}
	caFile := f.caFile
	if caFile == "" {
		cfg, err := g.loadConfig()
		if err != nil {
			return nil, err
		}
		caFile = cfg.Root.File.RootCert
		if caFile == "" || !fileExists(caFile) {
			return nil, errors.New("--ca: give the mesh roots (root-cert.pem) that verify the admin listener")
		}
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca %s holds no PEM certificate", caFile)
	}
	tc := &tls.Config{RootCAs: roots, ServerName: f.serverName, MinVersion: tls.VersionTLS12}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	var token string
	if hasCert {
		kp, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		tc.Certificates = []tls.Certificate{kp}
	} else {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, fmt.Errorf("--token-file %s is empty", f.tokenFile)
		}
	}
	return admin.NewRemoteClient(f.address, tc, token), nil
}
