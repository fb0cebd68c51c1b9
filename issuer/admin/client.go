package admin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/meshca/meshca/ca/store"
)

// Client talks to a running meshca serve through its admin socket, or
// to its admin TCP listener (NewRemoteClient).
type Client struct {
	// socket is the socket path, or the remote address, for messages.
	socket string
	base   string
	token  string
	hc     *http.Client
}

// NewClient returns a client of the socket at path. It does not connect.
func NewClient(path string) *Client {
	return &Client{socket: path, base: "http://meshca", hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		ResponseHeaderTimeout:  signTimeout + 5*time.Second,
		MaxResponseHeaderBytes: maxHeaderBytes,
	}}}
}

// NewRemoteClient returns a client of the admin TCP listener at addr
// (host:port) over TLS with cfg (its RootCAs the mesh roots; its
// Certificates an admin client certificate, or none with a token).
// token, when set, is sent as a bearer token. It does not connect.
//
// The server must present meshca's own serving certificate: the mesh roots
// also verify every workload's certificate, and a workload whose
// certificate carries the admin listener's DNS name (a policy rule may
// allow DNS SANs) could otherwise pose as the server and capture a token.
// meshca's serving certificate carries no URI SAN, and every certificate
// meshca issues to a workload carries its SPIFFE ID as one.
func NewRemoteClient(addr string, cfg *tls.Config, token string) *Client {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) > 0 {
			if u := cs.PeerCertificates[0].URIs; len(u) > 0 {
				return fmt.Errorf("the admin server presented a certificate with the URI SAN %s, a workload certificate: meshca's own serving certificate has no SPIFFE ID; check --admin-address", u[0])
			}
		}
		if verify != nil {
			return verify(cs)
		}
		return nil
	}
	return &Client{socket: addr, base: "https://" + addr, token: token, hc: &http.Client{Transport: &http.Transport{
		TLSClientConfig:        cfg,
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  signTimeout + 5*time.Second,
		MaxResponseHeaderBytes: maxHeaderBytes,
		ForceAttemptHTTP2:      false,
	}}}
}

// Check tells whether a server listens on the socket.
func (c *Client) Check(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return err
	}
	return conn.Close()
}

// maxResponseBytes bounds one JSON response (a record or a chain).
const maxResponseBytes = 4 << 20

// Sign asks the running authority to sign; it returns the chain in Istio's
// order.
func (c *Client) Sign(ctx context.Context, req SignRequest) ([]string, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var out SignResponse
	if err := c.do(ctx, http.MethodPost, pathSign, body, &out); err != nil {
		return nil, err
	}
	return out.Chain, nil
}

// GetIssuance returns one record, or an error wrapping store.ErrNotFound.
func (c *Client) GetIssuance(ctx context.Context, serial string) (store.Issuance, error) {
	var rec store.Issuance
	err := c.do(ctx, http.MethodGet, pathRecords+"/"+url.PathEscape(serial), nil, &rec)
	if isNotFound(err) {
		// Only a missing record answers 404 on this route.
		return rec, store.ErrNotFound
	}
	return rec, err
}

// Revoke asks the running service to revoke; it returns the stored
// records, those revoked before marked Existing.
func (c *Client) Revoke(ctx context.Context, b RevokeBody) ([]store.Revocation, error) {
	recs, _, err := c.RevokeWithNotices(ctx, b)
	return recs, err
}

// RevokeWithNotices is Revoke, with the service's notices about the
// records (RevokeResponse.Notices).
func (c *Client) RevokeWithNotices(ctx context.Context, b RevokeBody) ([]store.Revocation, []string, error) {
	body, err := json.Marshal(b)
	if err != nil {
		return nil, nil, err
	}
	var out RevokeResponse
	if err := c.do(ctx, http.MethodPost, pathRevocations, body, &out); err != nil {
		return nil, nil, err
	}
	already := make(map[string]bool, len(out.AlreadyRevoked))
	for _, s := range out.AlreadyRevoked {
		already[s] = true
	}
	for i := range out.Revocations {
		out.Revocations[i].Existing = already[out.Revocations[i].Serial]
	}
	return out.Revocations, out.Notices, nil
}

// ListRevocations calls fn for each revocation with Seq > since, in Seq
// order, until fn returns false.
func (c *Client) ListRevocations(ctx context.Context, since uint64, fn func(store.Revocation) bool) error {
	return listLines(c, ctx, pathRevocations+"?since="+strconv.FormatUint(since, 10), fn)
}

// CRLs describes every CRL the service serves.
func (c *Client) CRLs(ctx context.Context) ([]CRLInfo, error) {
	var out CRLsResponse
	err := c.do(ctx, http.MethodGet, pathCRLs, nil, &out)
	return out.CRLs, err
}

// CRL returns the DER of the full (or delta) CRL of scope.
func (c *Client) CRL(ctx context.Context, scope string, delta bool) ([]byte, error) {
	p := pathCRLs + "/" + url.PathEscape(scope)
	if delta {
		p += "?delta=1"
	}
	resp, err := c.send(ctx, http.MethodGet, p, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, responseError(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxCRLBytes+1))
	if err != nil {
		return nil, fmt.Errorf("admin endpoint %s: reading the CRL: %w", c.socket, err)
	}
	if len(b) > maxCRLBytes {
		return nil, fmt.Errorf("admin endpoint %s: the CRL is larger than %d bytes", c.socket, maxCRLBytes)
	}
	return b, nil
}

// Status reports the service's state.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, pathStatus, nil, &st)
	return st, err
}

// maxCRLBytes bounds a CRL the client reads (1M entries are ~40 MiB).
const maxCRLBytes = 256 << 20

// ListIssuances calls fn for each record in serial order until fn returns
// false.
func (c *Client) ListIssuances(ctx context.Context, fn func(store.Issuance) bool) error {
	return listLines(c, ctx, pathRecords, fn)
}

// listLines reads a JSON-lines listing; a body cut short is an error.
func listLines[T any](c *Client, ctx context.Context, path string, fn func(T) bool) error {
	resp, err := c.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return responseError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxResponseBytes)
	for sc.Scan() {
		var rec T
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return fmt.Errorf("admin endpoint %s: bad record: %w", c.socket, err)
		}
		if !fn(rec) {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("admin endpoint %s: the listing was cut short: %w", c.socket, err)
	}
	return nil
}

// Close releases idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return responseError(resp)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, maxResponseBytes)).Decode(out)
}

func (c *Client) send(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin endpoint %s: %w", c.socket, err)
	}
	return resp, nil
}

// StatusError is a non-2xx answer: the server's message, as the offline
// command would print it, and the HTTP status.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string { return e.Message }

func isNotFound(err error) bool {
	se, ok := errors.AsType[*StatusError](err)
	return ok && se.Code == http.StatusNotFound
}

func responseError(resp *http.Response) error {
	var e errorBody
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBytes)).Decode(&e); err != nil || e.Error == "" {
		return &StatusError{Code: resp.StatusCode, Message: fmt.Sprintf("admin endpoint: HTTP %d", resp.StatusCode)}
	}
	return &StatusError{Code: resp.StatusCode, Message: e.Error}
}
