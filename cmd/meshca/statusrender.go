package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/meshca/meshca/issuer/admin"
	"github.com/meshca/meshca/rotation"
)

// SGR colours (ECMA-48 section 8.3.117).
const (
	sgrRed    = "\x1b[31m"
	sgrGreen  = "\x1b[32m"
	sgrYellow = "\x1b[33m"
	sgrReset  = "\x1b[0m"
)

// colourOf is the colour of a health class, rotation state or severity.
var colourOf = map[string]string{
	admin.HealthOK: sgrGreen, "healthy": sgrGreen,
	admin.HealthWarning: sgrYellow, "paused": sgrYellow,
	admin.HealthCritical: sgrRed, admin.HealthExpired: sgrRed, admin.HealthStale: sgrRed, "stuck": sgrRed,
}

// useColour decides --color: always, never, or auto (the default): colour
// when out is a terminal and NO_COLOR (https://no-color.org) is unset or
// empty.
func useColour(mode string, out any, getenv func(string) string) (bool, error) {
	switch mode {
	case "always":
		return true, nil
	case "never":
		return false, nil
	case "auto", "":
	default:
		return false, fmt.Errorf("--color %q: use auto, always or never", mode)
	}
	if getenv("NO_COLOR") != "" || getenv("TERM") == "dumb" {
		return false, nil
	}
	f, ok := out.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())), nil
}

// cell is one table cell; coloured cells are wrapped in their colour.
type cell struct {
	text     string
	coloured bool
}

func plain(s string) cell   { return cell{text: s} }
func painted(s string) cell { return cell{text: s, coloured: true} }

// table writes rows under header: every column as wide as its widest
// cell plus two spaces, the last unpadded, trailing spaces trimmed.
// Widths count the text, never the colour sequences, so colour does not
// move the columns.
func table(out io.Writer, colour bool, header []string, rows [][]cell) {
	all := make([][]cell, 0, len(rows)+1)
	h := make([]cell, len(header))
	for i, s := range header {
		h[i] = plain(s)
	}
	all = append(all, h)
	all = append(all, rows...)
	widths := make([]int, len(header))
	for _, r := range all {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c.text))
		}
	}
	for _, r := range all {
		var b strings.Builder
		for i, c := range r {
			if c.coloured {
				b.WriteString(paint(colour, c.text))
			} else {
				b.WriteString(c.text)
			}
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c.text)+2))
			}
		}
		fmt.Fprintln(out, strings.TrimRight(b.String(), " "))
	}
}

// paint wraps s in its colour when colour is on and s has one.
func paint(colour bool, s string) string {
	if sgr, ok := colourOf[s]; ok && colour {
		return sgr + s + sgrReset
	}
	return s
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// relative says how far t is from now: "in 12d", "in 23h", "12h ago".
func relative(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now)
	if d < 0 {
		return short(-d) + " ago"
	}
	return "in " + short(d)
}

// short is d rounded down to days from two days up, else hours, minutes
// or seconds.
func short(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d >= time.Hour:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Minute:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

func holder(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printStatus writes st as tables; running says whether the service
// answered (else st was read from the store).
func printStatus(out io.Writer, st admin.Status, running, colour bool) error {
	now := st.GeneratedAt
	server := "running (answered through its admin endpoint)"
	if !running {
		server = "not running (read from the store)"
	}
	storeHealth := paint(colour, "healthy")
	if !st.Store.Healthy {
		storeHealth = "UNHEALTHY: " + st.Store.Error
	}
	table(out, false, []string{"server:", server}, [][]cell{
		{plain("trust domain:"), plain(st.TrustDomain)},
		{plain("active generation:"), plain(fmt.Sprintf("%d (%s), intermediate %s, not after %s", st.Generation, st.Profile, st.IntermediateSubject, stamp(st.IntermediateNotAfter)))},
		{plain("store:"), plain(st.Store.Path + ", " + storeHealth)},
		{plain("last revocation:"), plain(fmt.Sprint(st.LastRevocationSeq))},
		{plain("as of:"), plain(stamp(now))},
	})

	section(out, "CA CERTIFICATES", len(st.Certificates) == 0, "none known")
	if len(st.Certificates) > 0 {
		var rows [][]cell
		for _, c := range st.Certificates {
			state := orDash(c.State)
			if c.Revoked {
				state += ", REVOKED"
			}
			rows = append(rows, []cell{plain(c.Kind), plain(holder(c.Namespace, c.Name)), plain(state), plain(stamp(c.NotAfter)),
				plain(relative(c.NotAfter, now)), painted(c.Health), plain(c.Serial), plain(c.Subject)})
		}
		table(out, colour, []string{"KIND", "HOLDER", "STATE", "NOT AFTER", "EXPIRES", "HEALTH", "SERIAL", "SUBJECT"}, rows)
	}

	section(out, "BUNDLES", len(st.Bundles) == 0, "none")
	if len(st.Bundles) > 0 {
		var rows [][]cell
		for _, b := range st.Bundles {
			rows = append(rows, []cell{plain(b.Kind), plain(holder(b.Namespace, b.Name)), plain(fmt.Sprint(b.Certificates)),
				plain(stamp(b.NotAfter)), plain(relative(b.NotAfter, now)), painted(b.Health)})
		}
		table(out, colour, []string{"KIND", "HOLDER", "CERTS", "EARLIEST NOT AFTER", "EXPIRES", "HEALTH"}, rows)
	}

	noCRLs := "none served yet"
	if !running {
		noCRLs = "none: meshca serve builds and serves the CRLs"
	}
	section(out, "CRLS", len(st.CRLs) == 0, noCRLs)
	if len(st.CRLs) > 0 {
		var rows [][]cell
		for _, c := range st.CRLs {
			kind := "full"
			if c.Delta {
				kind = "delta"
			}
			rows = append(rows, []cell{plain(c.Scope), plain(kind), plain(fmt.Sprint(c.Number)), plain(stamp(c.ThisUpdate)),
				plain(stamp(c.NextUpdate)), plain(relative(c.NextUpdate, now)), painted(orDash(c.Health)), plain(fmt.Sprint(c.Size))})
		}
		table(out, colour, []string{"SCOPE", "KIND", "NUMBER", "THIS UPDATE", "NEXT UPDATE", "NEXT IN", "HEALTH", "BYTES"}, rows)
	}

	noRotation := "no rotation controller reports"
	if !running {
		noRotation = "none: meshca serve runs the rotation controllers"
	}
	section(out, "ROTATION", len(st.Rotation) == 0, noRotation)
	if len(st.Rotation) > 0 {
		var rows [][]cell
		for _, r := range st.Rotation {
			next := stamp(r.Next)
			if !r.Next.IsZero() {
				next += " (" + relative(r.Next, now) + ")"
			}
			rows = append(rows, []cell{plain(r.CA), plain(r.Phase), painted(rotationState(r)), plain(stamp(r.Since)), plain(next),
				plain(stamp(r.LastSuccess)), plain(rotationNote(r))})
		}
		table(out, colour, []string{"CA", "PHASE", "STATE", "SINCE", "NEXT", "LAST SUCCESS", "NOTE"}, rows)
	}

	section(out, "ALERTS", len(st.Alerts) == 0, "none firing")
	if len(st.Alerts) > 0 {
		var rows [][]cell
		for _, a := range st.Alerts {
			rows = append(rows, []cell{painted(a.Severity), plain(a.Rule), plain(a.Object), plain(stamp(a.StartsAt)), plain(a.Summary)})
		}
		table(out, colour, []string{"SEVERITY", "RULE", "OBJECT", "SINCE", "SUMMARY"}, rows)
	}

	if len(st.Problems) > 0 {
		section(out, "PROBLEMS", false, "")
		for _, p := range st.Problems {
			fmt.Fprintln(out, p)
		}
	}

	section(out, "GENERATIONS", len(st.Generations) == 0, "none")
	if len(st.Generations) > 0 {
		var rows [][]cell
		for _, g := range st.Generations {
			state := g.StateName()
			if r := g.Revoked; r != nil {
				state += fmt.Sprintf(", REVOKED %s (%s)", stamp(r.RevokedAt), r.Reason)
			}
			rows = append(rows, []cell{plain(fmt.Sprint(g.ID)), plain(g.Profile), plain(g.Source), plain(state), plain(stamp(g.NotAfter)), plain(g.Subject)})
		}
		table(out, colour, []string{"ID", "PROFILE", "SOURCE", "STATE", "NOT AFTER", "SUBJECT"}, rows)
	}
	return nil
}

// section starts a section; when empty it says so with none.
func section(out io.Writer, title string, empty bool, none string) {
	fmt.Fprintf(out, "\n%s\n", title)
	if empty {
		fmt.Fprintln(out, none)
	}
}

// rotationState is stuck, paused or ok, the worst first.
func rotationState(r rotation.Status) string {
	switch {
	case r.Stuck:
		return "stuck"
	case r.Paused:
		return "paused"
	}
	return admin.HealthOK
}

// rotationNote is the problem, then what the controller waits for.
func rotationNote(r rotation.Status) string {
	var parts []string
	for _, s := range []string{r.Problem, r.Waiting} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "; ")
}
