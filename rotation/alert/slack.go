package alert

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"k8s.io/utils/clock"
)

// SlackInterval is the least time between two messages to one Slack
// incoming webhook: Slack accepts about one message per second per webhook
// and answers 429 with Retry-After beyond it.
const SlackInterval = time.Second

// NewSlack returns a sink that posts Block Kit messages to the Slack
// incoming webhook whose URL is in urlFile. A message counts as delivered
// when Slack answers 200 with the body "ok".
func NewSlack(urlFile string, clk clock.PassiveClock) (Sink, error) {
	if clk == nil {
		clk = clock.RealClock{}
	}
	s, err := newHTTPSink("slack", "Slack webhook", urlFile, clk)
	if err != nil {
		return nil, err
	}
	s.interval = SlackInterval
	s.body = func(n Notification) ([]byte, error) { return json.Marshal(slackMessage(n)) }
	s.ok = func(status int, body []byte) bool { return status == 200 && strings.TrimSpace(string(body)) == "ok" }
	return s, nil
}

// Block Kit (https://docs.slack.dev/reference/block-kit/blocks).
type slackPayload struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Fields   []slackText `json:"fields,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// Block Kit limits: a header's text 150 characters, a section's 3000, a field's 2000.
const (
	slackHeaderMax  = 150
	slackSectionMax = 3000
	slackFieldMax   = 2000
)

func mrkdwn(s string, max int) slackText {
	return slackText{Type: "mrkdwn", Text: truncate(s, max)}
}

// slackEscape escapes the three characters Slack's mrkdwn reserves.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// slackMessage says what, where, when it expires and what meshca is doing.
func slackMessage(n Notification) slackPayload {
	s := n.State
	var title, text string
	switch n.Kind {
	case KindResolved:
		title = "Resolved: " + s.Rule
		text = fmt.Sprintf("[RESOLVED] %s: %s", slackEscape(s.Object), slackEscape(s.Summary))
	case KindRepeat:
		title = fmt.Sprintf("Still firing (%s): %s", s.Severity, s.Rule)
		text = fmt.Sprintf("[FIRING:%s] %s: %s", s.Severity, slackEscape(s.Object), slackEscape(s.Summary))
	default:
		title = fmt.Sprintf("Firing (%s): %s", s.Severity, s.Rule)
		text = fmt.Sprintf("[FIRING:%s] %s: %s", s.Severity, slackEscape(s.Object), slackEscape(s.Summary))
	}
	fields := []slackText{
		mrkdwn("*Where*\n"+slackEscape(s.Object), slackFieldMax),
		mrkdwn("*Severity*\n"+s.Severity, slackFieldMax),
	}
	if !s.Expires.IsZero() {
		fields = append(fields, mrkdwn("*Expires*\n"+stamp(s.Expires)+" ("+relative(s.Expires.Sub(n.At))+")", slackFieldMax))
	}
	fields = append(fields, mrkdwn("*Firing since*\n"+stamp(s.StartsAt), slackFieldMax))
	if n.Kind == KindResolved {
		fields = append(fields, mrkdwn("*Resolved at*\n"+stamp(s.EndsAt), slackFieldMax))
	}
	blocks := []slackBlock{
		{Type: "header", Text: &slackText{Type: "plain_text", Text: truncate(title, slackHeaderMax)}},
		{Type: "section", Text: ptr(mrkdwn("*What*\n"+slackEscape(s.Summary), slackSectionMax))},
		{Type: "section", Fields: fields},
	}
	action := s.Action
	if n.Kind == KindResolved {
		action = "Nothing more: the problem is gone."
	}
	if action != "" {
		blocks = append(blocks, slackBlock{Type: "section", Text: ptr(mrkdwn("*What meshca is doing*\n"+slackEscape(action), slackSectionMax))})
	}
	blocks = append(blocks, slackBlock{Type: "context", Elements: []slackText{mrkdwn("meshca alert `"+slackEscape(s.Key)+"`", slackFieldMax)}})
	return slackPayload{Text: truncate(text, slackSectionMax), Blocks: blocks}
}

func ptr[T any](v T) *T { return &v }

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// relative says how far d is, in days and hours ("in 3d 4h", "2h ago").
func relative(d time.Duration) string {
	ago := d < 0
	if ago {
		d = -d
	}
	d = d.Round(time.Minute)
	days, rest := d/(24*time.Hour), d%(24*time.Hour)
	var s string
	switch {
	case days > 0:
		s = fmt.Sprintf("%dd %dh", days, rest/time.Hour)
	case rest >= time.Hour:
		s = fmt.Sprintf("%dh %dm", rest/time.Hour, rest%time.Hour/time.Minute)
	default:
		s = fmt.Sprintf("%dm", rest/time.Minute)
	}
	if ago {
		return "expired " + s + " ago"
	}
	return "in " + s
}
