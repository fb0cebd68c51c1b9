package alert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"k8s.io/utils/clock"
)

const (
	// requestTimeout bounds one delivery.
	requestTimeout = 10 * time.Second
	// maxResponseBytes is how much of an answer is read.
	maxResponseBytes = 4 << 10
)

// redacted stands for a webhook URL in every message: the URL is the
// webhook's credential.
const redacted = "<webhook URL redacted>"

// httpSink posts JSON to a webhook URL read from a file (a mounted Secret:
// a rotated Secret is picked up at the next message).
type httpSink struct {
	name     string
	label    string // in messages
	urlFile  string
	client   *http.Client
	clk      clock.PassiveClock
	interval time.Duration
	body     func(Notification) ([]byte, error)
	// ok reports whether a 2xx answer is a success.
	ok func(status int, body []byte) bool
}

func newHTTPSink(name, label, urlFile string, clk clock.PassiveClock) (*httpSink, error) {
	s := &httpSink{
		name: name, label: label, urlFile: urlFile, clk: clk,
		client: &http.Client{
			Timeout: requestTimeout,
			// A redirect would send the message (and the URL's path in
			// logs) elsewhere; webhooks answer directly.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	if _, err := s.url(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *httpSink) Name() string               { return s.name }
func (s *httpSink) MinInterval() time.Duration { return s.interval }

// url reads and checks the webhook URL. Its errors never hold the URL.
func (s *httpSink) url() (string, error) {
	b, err := os.ReadFile(s.urlFile)
	if err != nil {
		return "", fmt.Errorf("%s: reading the URL file: %w", s.label, err)
	}
	raw := strings.TrimSpace(string(b))
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("%s: %s does not hold an http(s) URL (its content is not shown: it is a secret)", s.label, s.urlFile)
	}
	return raw, nil
}

// Send posts n once.
func (s *httpSink) Send(ctx context.Context, n Notification) error {
	raw, err := s.url()
	if err != nil {
		return err
	}
	body, err := s.body(n)
	if err != nil {
		return &DeliveryError{Permanent: true, Err: fmt.Errorf("%s: encoding the message: %w", s.label, err)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, raw, bytes.NewReader(body))
	if err != nil {
		return &DeliveryError{Permanent: true, Err: fmt.Errorf("%s: %s", s.label, redact(err, raw))}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "meshca")
	resp, err := s.client.Do(req)
	if err != nil {
		return &DeliveryError{Err: fmt.Errorf("%s: %s", s.label, redact(err, raw))}
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if resp.StatusCode/100 == 2 && s.ok(resp.StatusCode, answer) {
		return nil
	}
	de := &DeliveryError{
		Status: resp.StatusCode,
		Err:    fmt.Errorf("%s answered %d: %q", s.label, resp.StatusCode, scrub(truncate(string(answer), 200), raw)),
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		de.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), s.clk.Now())
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout:
	default:
		de.Permanent = true // 2xx that is not a success, 3xx, 4xx
	}
	return de
}

// retryAfter parses Retry-After: delay-seconds or an HTTP-date (RFC 9110
// section 10.2.3); 0 when absent or invalid.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// redact returns err's message without the webhook URL. *url.Error, which
// the HTTP client returns, prints the whole URL; so may its cause.
func redact(err error, raw string) string {
	var ue *url.Error
	msg := err.Error()
	if errors.As(err, &ue) {
		msg = ue.Op + " " + redacted + ": " + ue.Err.Error()
	}
	return scrub(msg, raw)
}

// scrub removes the webhook URL, and its path and query (the secret part
// of it), from msg.
func scrub(msg, raw string) string {
	msg = strings.ReplaceAll(msg, raw, redacted)
	if u, perr := url.Parse(raw); perr == nil {
		if u.Path != "" && u.Path != "/" {
			msg = strings.ReplaceAll(msg, u.Path, "/"+redacted)
		}
		if u.RawQuery != "" {
			msg = strings.ReplaceAll(msg, u.RawQuery, redacted)
		}
	}
	return msg
}

// truncate cuts s to at most n bytes and marks the cut, never inside a
// UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
