package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/meshca/meshca/ca/store"
)

// Client talks to a running meshca serve through its admin socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client of the socket at path. It does not connect.
func NewClient(path string) *Client {
	return &Client{socket: path, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		ResponseHeaderTimeout:  signTimeout + 5*time.Second,
		MaxResponseHeaderBytes: maxHeaderBytes,
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

// The host part is ignored: the transport always dials the socket.
const baseURL = "http://meshca"

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
	return rec, err
}

// ListIssuances calls fn for each record in serial order until fn returns
// false.
func (c *Client) ListIssuances(ctx context.Context, fn func(store.Issuance) bool) error {
	resp, err := c.send(ctx, http.MethodGet, pathRecords, nil)
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
		var rec store.Issuance
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return fmt.Errorf("admin socket %s: bad record: %w", c.socket, err)
		}
		if !fn(rec) {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("admin socket %s: the listing was cut short: %w", c.socket, err)
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
	req, err := http.NewRequestWithContext(ctx, method, baseURL+path, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", c.socket, err)
	}
	return resp, nil
}

// responseError is the server's message, as the offline command would
// print it; a missing record is store.ErrNotFound.
func responseError(resp *http.Response) error {
	var e errorBody
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBytes)).Decode(&e); err != nil || e.Error == "" {
		return fmt.Errorf("admin socket: HTTP %d", resp.StatusCode)
	}
	if resp.StatusCode == http.StatusNotFound {
		// Only a missing record answers 404 with a JSON body.
		return store.ErrNotFound
	}
	return errors.New(e.Error)
}
