// Package grafana_test checks meshca's Grafana dashboard: it is valid JSON
// of the dashboard model, and every PromQL expression selects only metrics
// that meshca (or, for the Istio panels, Istio) exports.
package grafana_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/meshca/meshca/deploy/prometheus/promexpr"
	"github.com/meshca/meshca/test/reporoot"
)

type panel struct {
	ID      int     `json:"id"`
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"` // a collapsed row's
	GridPos *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func flatten(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flatten(p.Panels)...)
	}
	return out
}

func TestDashboard_ExpressionsUseMetricsThatExist(t *testing.T) {
	b, err := os.ReadFile("meshca-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("meshca-dashboard.json: %v", err)
	}
	if d.Title == "" || d.UID == "" {
		t.Fatalf("title %q, uid %q: both are required", d.Title, d.UID)
	}
	root, err := reporoot.Dir()
	if err != nil {
		t.Fatal(err)
	}
	code, err := promexpr.CodeMetrics(root)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[int]bool{}
	exprs := 0
	for _, p := range flatten(d.Panels) {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d is missing or repeated", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v is missing or outside the 24 columns", p.Title, p.GridPos)
		}
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			if len(promexpr.MetricNames(tg.Expr)) == 0 {
				t.Errorf("panel %q %s: %q selects no metric", p.Title, tg.RefID, tg.Expr)
			}
			if u := promexpr.Unknown(tg.Expr, code); len(u) > 0 {
				t.Errorf("panel %q %s uses metrics nothing exports: %q", p.Title, tg.RefID, u)
			}
		}
	}
	if exprs == 0 {
		t.Fatal("the dashboard has no queries")
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			t.Errorf("template variable %s is a query; check its metrics here too", v.Name)
		}
	}
}
