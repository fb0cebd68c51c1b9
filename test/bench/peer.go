package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/meshca/meshca/test/reporoot"
)

// The peer benchmark: meshca serve and istiod's own CA server
// (test/tools/istiod, built by `bash test/tools/testbin.sh istiod`), each
// in its own process on the same CA material, driven in turn by one load
// generator in a third process (test/bench/loadgen).

// peerConns is the number of client connections (one identity each).
const peerConns = 4

// peerCSRs is the number of pre-made CSRs per identity.
const peerCSRs = 16

// A peer target is one server process under test.
type peerTarget struct {
	name       string
	cmd        *exec.Cmd
	addr       string
	serverName string
	root       string // PEM file of the roots that verify the server
	creds      string // client-N.crt/key and csr-N.pem
	ready      func() error
	// metrics is meshca's /metrics URL, for its journal's figures; empty
	// for istiod.
	metrics string
}

// peerRun is one loadgen run against one target.
type peerRun struct {
	target      string
	concurrency int
	round       int // the round at this concurrency, from 0
	res         loadgenResult
	cpuSeconds  float64 // server CPU (user+system) over the whole run
	loadgenCPU  float64 // the load generator's CPU over the whole run
	rssMiB      float64 // server resident set after the run
	// syscalls and switches are the server's system calls and context
	// switches over the whole run, counted by perf stat (-peer-syscalls);
	// -1 when not counted.
	syscalls, switches float64
	// journal is meshca's issuance journal over the whole run, from its
	// own metrics; nil for istiod.
	journal *journalStats
}

// loadgenResult mirrors loadgen's JSON output.
type loadgenResult struct {
	OK, Errors, TotalOK  int64
	FirstError           string
	Seconds              float64
	P50MS, P99MS, P999MS float64
}

func (r peerRun) rate() float64 { return float64(r.res.OK) / r.res.Seconds }

func (r peerRun) cpuPer1000() float64 {
	if r.res.TotalOK == 0 {
		return 0
	}
	return r.cpuSeconds / float64(r.res.TotalOK) * 1000
}

func (r peerRun) loadgenPer1000() float64 {
	if r.res.TotalOK == 0 {
		return 0
	}
	return r.loadgenCPU / float64(r.res.TotalOK) * 1000
}

// peerOptions configure the peer benchmark.
type peerOptions struct {
	duration    time.Duration
	rounds      int
	conc        []int
	storeDir    string // where meshca's stores live ("" = a temporary folder on disk)
	istiodPath  string
	keepWorkDir bool
	perfDir     string   // record each server with perf(1) into this folder
	syscalls    bool     // count each server's system calls and context switches (perf stat)
	meshcaEnv   []string // extra environment of the meshca servers (experiments: GOGC=200)
}

// runPeer builds the programs, starts the servers and prints the peer table.
func runPeer(ctx context.Context, o peerOptions) error {
	root, err := reporoot.Dir()
	if err != nil {
		return err
	}
	istiod := o.istiodPath
	if istiod == "" {
		istiod = filepath.Join(root, "bin", "istiod", "istiod-ca")
	}
	if _, err := os.Stat(istiod); err != nil {
		return fmt.Errorf("istiod's CA is not built (%v); run: bash test/tools/testbin.sh istiod", err)
	}
	work, err := os.MkdirTemp("", "meshca-peer-")
	if err != nil {
		return err
	}
	if o.keepWorkDir {
		fmt.Println("peer: work folder", work)
	} else {
		defer os.RemoveAll(work)
	}
	stores := o.storeDir
	if stores == "" {
		stores = work
	}
	if err := os.MkdirAll(stores, 0o700); err != nil {
		return err
	}
	fmt.Printf("peer: meshca's stores in %s (%s)\n", stores, fsType(stores))
	fmt.Println("peer: building meshca and the load generator")
	meshca, loadgen := filepath.Join(work, "meshca"), filepath.Join(work, "loadgen")
	for bin, pkg := range map[string]string{meshca: "./cmd/meshca", loadgen: "./test/bench/loadgen"} {
		if out, err := goCmd(root, "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}

	// The same CA material for meshca (classical) and istiod; a catalyst CA
	// under its own root for the catalyst figure.
	classical, catalyst := filepath.Join(stores, "meshca-classical"), filepath.Join(stores, "meshca-catalyst")
	cacerts := filepath.Join(work, "cacerts")
	steps := [][]string{
		{"init", "--dir", classical, "--profile", "classical"},
		{"init", "--dir", catalyst, "--profile", "catalyst"},
		{"cacerts", "--dir", classical, "--out", cacerts},
	}
	for _, s := range steps {
		if out, err := exec.Command(meshca, s...).CombinedOutput(); err != nil {
			return fmt.Errorf("meshca %s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	for _, dir := range []string{classical, catalyst} {
		if err := benchConfig(dir); err != nil {
			return err
		}
		if err := clientCreds(meshca, dir); err != nil {
			return err
		}
	}

	targets := []*peerTarget{
		meshcaTarget("meshca classical", meshca, classical, work),
		istiodTarget(istiod, cacerts, classical, work),
		meshcaTarget("meshca catalyst", meshca, catalyst, work),
	}
	for _, t := range []*peerTarget{targets[0], targets[2]} {
		t.cmd.Env = append(os.Environ(), o.meshcaEnv...)
	}
	for _, t := range targets {
		if err := t.start(ctx); err != nil {
			stopAll(targets)
			return err
		}
	}
	defer stopAll(targets)

	var runs []peerRun
	total := len(o.conc) * o.rounds * len(targets)
	n := 0
	for _, c := range o.conc {
		for r := 0; r < o.rounds; r++ {
			for _, t := range targets { // A B C, A B C: alternating
				n++
				run, err := t.drive(ctx, loadgen, c, o)
				if err != nil {
					return err
				}
				run.round = r
				fmt.Printf("peer [%2d/%d] %-17s c=%-3d %6.0f certs/s  p99 %6.2f ms  errors %d  cpu %.2f s/1000\n",
					n, total, t.name, c, run.rate(), run.res.P99MS, run.res.Errors, run.cpuPer1000())
				if run.res.FirstError != "" {
					fmt.Printf("            first error: %s\n", run.res.FirstError)
				}
				runs = append(runs, run)
			}
		}
	}
	printPeerTable(runs, o.conc, targets)
	return nil
}

func goCmd(dir string, args ...string) *exec.Cmd {
	c := exec.Command("go", args...)
	c.Dir = dir
	return c
}

// benchConfig lifts the per-identity rate limit: the load generator is 4
// identities doing the work of a whole cluster. Every other setting,
// durability included, is what 'meshca init' writes and serve defaults to.
func benchConfig(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, "meshca.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString("server:\n  rateLimit:\n    perIdentityQPS: 1000000\n    perIdentityBurst: 1000000\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// clientCreds issues one client certificate per connection with
// 'meshca sign' and writes the pre-made CSRs of each identity.
func clientCreds(meshca, dir string) error {
	creds := filepath.Join(dir, "bench-creds")
	if err := os.MkdirAll(creds, 0o700); err != nil {
		return err
	}
	for i := range peerConns {
		id := &url.URL{Scheme: "spiffe", Host: "cluster.local", Path: fmt.Sprintf("/ns/bench/sa/load-%d", i)}
		var csrs bytes.Buffer
		for j := 0; j <= peerCSRs; j++ {
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return err
			}
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
			if err != nil {
				return err
			}
			if j < peerCSRs {
				_ = pem.Encode(&csrs, &pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
				continue
			}
			// The last key is the connection's client key.
			csrFile := filepath.Join(creds, fmt.Sprintf("client-%d.csr", i))
			if err := os.WriteFile(csrFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o600); err != nil {
				return err
			}
			out, err := exec.Command(meshca, "sign", "--dir", dir, "--csr", csrFile, "--identity", id.String()).Output()
			if err != nil {
				return fmt.Errorf("meshca sign: %w", err)
			}
			if err := os.WriteFile(filepath.Join(creds, fmt.Sprintf("client-%d.crt", i)), out, 0o600); err != nil {
				return err
			}
			kder, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(creds, fmt.Sprintf("client-%d.key", i)), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(creds, fmt.Sprintf("csr-%d.pem", i)), csrs.Bytes(), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// freeAddr returns a loopback address no one listens on now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func meshcaTarget(name, meshca, dir, work string) *peerTarget {
	grpcAddr, _ := freeAddr()
	opsAddr, _ := freeAddr()
	logName := strings.ReplaceAll(name, " ", "-") + ".log"
	t := &peerTarget{
		name: name, addr: grpcAddr, serverName: "meshca.istio-system.svc",
		root: filepath.Join(dir, "root-cert.pem"), creds: filepath.Join(dir, "bench-creds"),
		cmd:     exec.Command(meshca, "serve", "--dir", dir, "--listen", grpcAddr, "--ops-listen", opsAddr),
		metrics: "http://" + opsAddr + "/metrics",
	}
	t.ready = func() error {
		resp, err := http.Get("http://" + opsAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	}
	t.logTo(filepath.Join(work, logName))
	return t
}

func istiodTarget(istiod, cacerts, classical, work string) *peerTarget {
	addr, _ := freeAddr()
	t := &peerTarget{
		name: "istiod", addr: addr, serverName: "istiod.istio-system.svc",
		root: filepath.Join(cacerts, "root-cert.pem"), creds: filepath.Join(classical, "bench-creds"),
		cmd: exec.Command(istiod, "--cacerts", cacerts, "--listen", addr),
	}
	t.ready = func() error { return tlsReady(t) }
	t.logTo(filepath.Join(work, "istiod.log"))
	return t
}

// logTo sends the server's output (meshca's audit lines among it) to a
// file, as a container runtime would take it.
func (t *peerTarget) logTo(path string) {
	f, err := os.Create(path)
	if err == nil {
		t.cmd.Stdout, t.cmd.Stderr = f, f
	}
}

// tlsReady completes one TLS handshake with the server.
func tlsReady(t *peerTarget) error {
	pemRoots, err := os.ReadFile(t.root)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemRoots)
	c, err := tls.Dial("tcp", t.addr, &tls.Config{RootCAs: roots, ServerName: t.serverName, NextProtos: []string{"h2"}})
	if err != nil {
		return err
	}
	return c.Close()
}

func (t *peerTarget) start(ctx context.Context) error {
	if err := t.cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := t.ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s did not become ready in 30s: %v", t.name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func stopAll(ts []*peerTarget) {
	for _, t := range ts {
		if t.cmd.Process != nil {
			_ = t.cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = t.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = t.cmd.Process.Kill()
			}
		}
	}
}

// drive runs the load generator once against t.
func (t *peerTarget) drive(ctx context.Context, loadgen string, conc int, o peerOptions) (peerRun, error) {
	pid := t.cmd.Process.Pid
	// meshca's journal figures are read before perf starts and after it
	// stops: a scrape may walk the store (the workload inventory's
	// collector), which is not the load's work.
	var journalBefore journalStats
	if t.metrics != "" {
		var err error
		if journalBefore, err = scrapeJournal(t.metrics); err != nil {
			return peerRun{}, fmt.Errorf("%s's journal metrics: %w", t.name, err)
		}
	}
	stopRecord := func() {}
	if o.perfDir != "" {
		stop, err := perfRecord(o.perfDir, fmt.Sprintf("%s-c%d", strings.ReplaceAll(t.name, " ", "-"), conc), pid)
		if err != nil {
			return peerRun{}, err
		}
		defer stop() // a no-op once stopped below
		stopRecord = stop
	}
	var counted func() (syscalls, switches float64, err error)
	if o.syscalls {
		var err error
		if counted, err = perfStat(pid); err != nil {
			return peerRun{}, err
		}
		defer func() { _, _, _ = counted() }() // a no-op once the counts are read
	}
	before, err := procCPU(pid)
	if err != nil {
		return peerRun{}, err
	}
	cmd := exec.CommandContext(ctx, loadgen, "--addr", t.addr, "--server-name", t.serverName, "--root", t.root,
		"--creds", t.creds, "--conns", strconv.Itoa(peerConns), "--concurrency", strconv.Itoa(conc),
		"--duration", o.duration.String(), "--warmup", "1s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return peerRun{}, fmt.Errorf("loadgen against %s: %v: %s", t.name, err, stderr.String())
	}
	after, err := procCPU(pid)
	if err != nil {
		return peerRun{}, err
	}
	run := peerRun{target: t.name, concurrency: conc, cpuSeconds: after - before, rssMiB: procRSS(pid),
		loadgenCPU: (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds(), syscalls: -1, switches: -1}
	if counted != nil {
		if run.syscalls, run.switches, err = counted(); err != nil {
			return peerRun{}, err
		}
	}
	stopRecord()
	if t.metrics != "" {
		now, err := scrapeJournal(t.metrics)
		var d journalStats
		if err == nil {
			d, err = now.since(journalBefore)
		}
		if err != nil {
			return peerRun{}, fmt.Errorf("%s's journal metrics: %w", t.name, err)
		}
		run.journal = &d
	}
	if err := json.Unmarshal(out, &run.res); err != nil {
		return peerRun{}, fmt.Errorf("loadgen output %q: %w", out, err)
	}
	return run, nil
}

// median of the runs of target at concurrency c, by rate; the run itself
// is reported so that its latency and CPU belong to the same run.
func medianRun(runs []peerRun, target string, c int) peerRun {
	var sel []peerRun
	for _, r := range runs {
		if r.target == target && r.concurrency == c {
			sel = append(sel, r)
		}
	}
	slices.SortFunc(sel, func(a, b peerRun) int {
		switch {
		case a.rate() < b.rate():
			return -1
		case a.rate() > b.rate():
			return 1
		}
		return 0
	})
	return sel[len(sel)/2]
}

func printPeerTable(runs []peerRun, conc []int, targets []*peerTarget) {
	fmt.Println("\nPEER: meshca vs istiod's own CA, separate processes, same CA material, one load generator process (median of the rounds)")
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SERVER\tCONC\tCERTS/S\tP50 MS\tP99 MS\tP999 MS\tERRORS\tCPU S/1000 CERTS\tLOADGEN CPU S/1000\tRSS MIB\tRATIO TO ISTIOD")
	verdicts := []string{}
	for _, c := range conc {
		ist := medianRun(runs, "istiod", c)
		for _, t := range targets {
			r := medianRun(runs, t.name, c)
			fmt.Fprintf(w, "%s\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t%.3f\t%.3f\t%.0f\t%.2f\n", t.name, c, r.rate(), r.res.P50MS, r.res.P99MS, r.res.P999MS,
				r.res.Errors, r.cpuPer1000(), r.loadgenPer1000(), r.rssMiB, r.rate()/ist.rate())
		}
		cl, ca := medianRun(runs, "meshca classical", c), medianRun(runs, "meshca catalyst", c)
		errs := int64(0)
		for _, r := range runs {
			if r.concurrency == c && r.target != "istiod" {
				errs += r.res.Errors
			}
		}
		verdicts = append(verdicts,
			fmt.Sprintf("c=%d: classical %.2fx istiod (%s >= 1.2x); p99 %.2f vs %.2f ms (%s <= istiod); catalyst %.2fx istiod classical (%s >= 0.8x); meshca errors %d",
				c, cl.rate()/ist.rate(), meets(cl.rate() >= 1.2*ist.rate()), cl.res.P99MS, ist.res.P99MS, meets(cl.res.P99MS <= ist.res.P99MS),
				ca.rate()/ist.rate(), meets(ca.rate() >= 0.8*ist.rate()), errs),
			fmt.Sprintf("      each round (runs next to each other): classical %s, catalyst %s; by CPU per certificate (istiod's server+load generator over meshca's): classical %s, catalyst %s",
				roundRatios(runs, "meshca classical", c), roundRatios(runs, "meshca catalyst", c),
				cpuRatios(runs, "meshca classical", c), cpuRatios(runs, "meshca catalyst", c)))
	}
	w.Flush()
	fmt.Println()
	for _, v := range verdicts {
		fmt.Println(v)
	}
	for _, l := range syscallLines(runs, conc, targets) {
		fmt.Println(l)
	}
	for _, l := range journalLines(runs, conc, targets) {
		fmt.Println(l)
	}
	fmt.Println("CPU S/1000 CERTS is the server's own CPU (user+system) per 1000 certificates, warm-up included; it depends little on what else the machine runs.")
	fmt.Println("The load generator shares the machine's cores: with both processes CPU-bound, certs/s is about cores / (server + load generator CPU per certificate).")
}

// syscallLines are the server's system calls and context switches per
// certificate (-peer-syscalls), each the median of the rounds, with the
// warm-up included as in the CPU figures; none when nothing was counted.
func syscallLines(runs []peerRun, conc []int, targets []*peerTarget) []string {
	var lines []string
	for _, c := range conc {
		var parts []string
		for _, t := range targets {
			var sc, cs []float64
			for _, r := range runs {
				if r.target == t.name && r.concurrency == c && r.syscalls >= 0 && r.res.TotalOK > 0 {
					sc = append(sc, r.syscalls/float64(r.res.TotalOK))
					cs = append(cs, r.switches/float64(r.res.TotalOK))
				}
			}
			if len(sc) == 0 {
				continue
			}
			parts = append(parts, fmt.Sprintf("%s %.1f / %.1f", t.name, median(sc), median(cs)))
		}
		if len(parts) > 0 {
			lines = append(lines, fmt.Sprintf("c=%d: system calls / context switches per certificate in the server (perf stat): %s", c, strings.Join(parts, ", ")))
		}
	}
	return lines
}

// roundRatios is target's rate over istiod's in each round at concurrency
// c. The runs of one round follow each other within seconds, so their
// ratio is less exposed than the medians' to a VM whose speed drifts
// between rounds.
func roundRatios(runs []peerRun, target string, c int) string {
	return perRound(runs, target, c, func(m, ist peerRun) float64 { return m.rate() / ist.rate() })
}

// cpuRatios is, in each round, istiod's CPU per certificate (server and
// load generator) over target's: the rate ratio the two would reach on a
// machine where both processes are CPU-bound, which is what the 2-core
// bench machine is at these concurrencies.
func cpuRatios(runs []peerRun, target string, c int) string {
	return perRound(runs, target, c, func(m, ist peerRun) float64 {
		return (ist.cpuPer1000() + ist.loadgenPer1000()) / (m.cpuPer1000() + m.loadgenPer1000())
	})
}

func perRound(runs []peerRun, target string, c int, ratio func(m, ist peerRun) float64) string {
	byRound := map[int]map[string]peerRun{}
	for _, r := range runs {
		if r.concurrency != c {
			continue
		}
		if byRound[r.round] == nil {
			byRound[r.round] = map[string]peerRun{}
		}
		byRound[r.round][r.target] = r
	}
	var out []string
	for round := 0; round < len(byRound); round++ {
		m, okM := byRound[round][target]
		ist, okI := byRound[round]["istiod"]
		if okM && okI {
			out = append(out, fmt.Sprintf("%.2fx", ratio(m, ist)))
		}
	}
	return strings.Join(out, " ")
}

func meets(ok bool) string {
	if ok {
		return "meets"
	}
	return "MISSES"
}
