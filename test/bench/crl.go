package main

// The CRL table: crl.Build (meshca's streaming DER builder) against
// x509.CreateRevocationList for 10k, 100k and 1M revoked certificates,
// and a delta CRL of 1k changes against a 1M base. Every build runs in a
// fresh child process (this binary with -crl-child), so that the heaps of
// the two builders never mix and a peak is the peak of one build.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

// Targets of the CRL builder at 1M entries, as ratios to the standard
// library, and of a 1k-entry delta CRL.
const (
	crlTimeTarget  = 1.0
	crlHeapTarget  = 0.25
	crlDeltaTarget = 50 * time.Millisecond
	crlDeltaSize   = 1000
)

var crlSizes = []int{10_000, 100_000, 1_000_000}

// crlChildResult is what a child prints, as one JSON line.
type crlChildResult struct {
	Builder  string        `json:"builder"`
	Entries  int           `json:"entries"`
	Time     time.Duration `json:"time"`
	PeakHeap uint64        `json:"peakHeap"` // sampled heap objects above the pre-build baseline
	PeakRSS  uint64        `json:"peakRSS"`  // VmHWM of the child
	Bytes    int           `json:"bytes"`
	Delta    time.Duration `json:"delta,omitempty"` // meshca: 1k-entry delta built after the base
}

// crlEntry is the i-th revoked certificate of the benchmark: a 16-octet
// serial shaped like meshca's (48-bit millisecond time, 80 random bits,
// top bit clear), a revocation time, and a reason (a third unspecified).
func crlEntry(rng *mrand.PCG, i int, serial *[16]byte) (time.Time, store.Reason) {
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(at.UnixMilli()))
	copy(serial[:6], ts[2:])
	serial[0] &= 0x7f
	binary.BigEndian.PutUint64(serial[6:14], rng.Uint64())
	binary.BigEndian.PutUint16(serial[14:], uint16(rng.Uint64()))
	return at, []store.Reason{store.ReasonUnspecified, store.ReasonKeyCompromise, store.ReasonSuperseded}[i%3]
}

// crlChild builds one CRL and prints a crlChildResult.
func crlChild(spec string) error {
	builder, count, ok := strings.Cut(spec, ":")
	n, err := strconv.Atoi(count)
	if !ok || err != nil || (builder != "meshca" && builder != "stdlib") {
		return fmt.Errorf("-crl-child %q: want meshca:N or stdlib:N", spec)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	issuer, err := root.NewSelfSignedRoot(key, "meshca bench CRL issuer", "meshca", 365*24*time.Hour, now)
	if err != nil {
		return err
	}
	p := crl.Params{Issuer: issuer, Number: uint64(n), ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour)}

	runtime.GC()
	stop := sampleHeap()
	start := time.Now()
	var der []byte
	switch builder {
	case "meshca":
		der, err = crl.Build(p, func(yield func(crl.Entry) bool) error {
			rng := mrand.NewPCG(1, 2)
			var serial [16]byte
			for i := range n {
				at, reason := crlEntry(rng, i, &serial)
				if !yield(crl.Entry{Serial: serial[:], RevokedAt: at, Reason: reason}) {
					return nil
				}
			}
			return nil
		}, crl.Signer{Key: key})
	case "stdlib":
		// The standard library takes the whole list as a slice.
		rng := mrand.NewPCG(1, 2)
		var serial [16]byte
		entries := make([]x509.RevocationListEntry, 0, n)
		for i := range n {
			at, reason := crlEntry(rng, i, &serial)
			entries = append(entries, x509.RevocationListEntry{SerialNumber: new(big.Int).SetBytes(serial[:]), RevocationTime: at, ReasonCode: int(reason)})
		}
		der, err = x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			RevokedCertificateEntries: entries, Number: new(big.Int).SetUint64(p.Number), ThisUpdate: p.ThisUpdate, NextUpdate: p.NextUpdate,
		}, issuer, key)
	}
	elapsed := time.Since(start)
	peak := stop()
	if err != nil {
		return err
	}
	res := crlChildResult{Builder: builder, Entries: n, Time: elapsed, PeakHeap: peak, PeakRSS: peakRSS(), Bytes: len(der)}
	runtime.KeepAlive(der)

	if builder == "meshca" && n == crlSizes[len(crlSizes)-1] {
		// The delta CRL of the next rebuild: the revocations since the
		// base, while the base CRL is still held (it is being served).
		dp := p
		dp.Number, dp.BaseNumber = p.Number+1, p.Number
		start := time.Now()
		delta, err := crl.Build(dp, func(yield func(crl.Entry) bool) error {
			rng := mrand.NewPCG(3, 4)
			var serial [16]byte
			for i := range crlDeltaSize {
				at, reason := crlEntry(rng, n+i, &serial)
				if !yield(crl.Entry{Serial: serial[:], RevokedAt: at, Reason: reason}) {
					return nil
				}
			}
			return nil
		}, crl.Signer{Key: key})
		res.Delta = time.Since(start)
		if err != nil {
			return fmt.Errorf("delta: %w", err)
		}
		if _, err := x509.ParseRevocationList(delta); err != nil {
			return fmt.Errorf("delta: %w", err)
		}
	}
	runtime.KeepAlive(der)
	return json.NewEncoder(os.Stdout).Encode(res)
}

// sampleHeap samples the bytes of heap objects (live and not yet
// collected) every 200µs until the returned function is called, which
// returns the peak above the level at the start.
func sampleHeap() func() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(s); return s[0].Value.Uint64() }
	base := read()
	done, peakc := make(chan struct{}), make(chan uint64)
	go func() {
		peak := base
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			if v := read(); v > peak {
				peak = v
			}
			select {
			case <-done:
				if v := read(); v > peak {
					peak = v
				}
				peakc <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		return <-peakc - base
	}
}

// peakRSS is this process's peak resident set size (proc(5): VmHWM).
func peakRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// runCRLChild runs one build in a fresh process.
func runCRLChild(builder string, n int) (crlChildResult, error) {
	self, err := os.Executable()
	if err != nil {
		return crlChildResult{}, err
	}
	var stderr bytes.Buffer
	cmd := exec.Command(self, "-crl-child", fmt.Sprintf("%s:%d", builder, n))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return crlChildResult{}, fmt.Errorf("%s %d entries: %w: %s", builder, n, err, stderr.String())
	}
	var r crlChildResult
	if err := json.Unmarshal(out, &r); err != nil {
		return crlChildResult{}, fmt.Errorf("%s %d entries: %w", builder, n, err)
	}
	return r, nil
}

// runCRL prints the CRL table: for each size the median of rounds runs
// of each builder, alternating.
func runCRL(rounds int) error {
	fmt.Printf("\nCRL builder: crl.Build (streaming DER) vs x509.CreateRevocationList, ECDSA P-256, each build in its own process, median of %d\n", rounds)
	type pair struct{ meshca, stdlib []crlChildResult }
	results := map[int]*pair{}
	for _, n := range crlSizes {
		results[n] = &pair{}
		for r := 0; r < rounds; r++ {
			fmt.Printf("  %d entries, round %d/%d\n", n, r+1, rounds)
			m, err := runCRLChild("meshca", n)
			if err != nil {
				return err
			}
			s, err := runCRLChild("stdlib", n)
			if err != nil {
				return err
			}
			results[n].meshca = append(results[n].meshca, m)
			results[n].stdlib = append(results[n].stdlib, s)
		}
	}
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\nENTRIES\tBUILDER\tTIME\tPEAK HEAP\tPEAK RSS\tCRL BYTES\tTIME RATIO\tHEAP RATIO\tRSS RATIO")
	var last [2]crlChildResult
	for _, n := range crlSizes {
		m, s := medianCRL(results[n].meshca), medianCRL(results[n].stdlib)
		fmt.Fprintf(w, "%d\tstdlib\t%s\t%s\t%s\t%d\t1.00\t1.00\t1.00\n", n, s.Time.Round(time.Millisecond), mib(s.PeakHeap), mib(s.PeakRSS), s.Bytes)
		fmt.Fprintf(w, "%d\tmeshca\t%s\t%s\t%s\t%d\t%.2f\t%.2f\t%.2f\n", n, m.Time.Round(time.Millisecond), mib(m.PeakHeap), mib(m.PeakRSS), m.Bytes,
			m.Time.Seconds()/s.Time.Seconds(), float64(m.PeakHeap)/float64(s.PeakHeap), float64(m.PeakRSS)/float64(s.PeakRSS))
		last = [2]crlChildResult{m, s}
	}
	w.Flush()
	m, s := last[0], last[1]
	tr, hr := m.Time.Seconds()/s.Time.Seconds(), float64(m.PeakHeap)/float64(s.PeakHeap)
	fmt.Printf("\nat %d entries: meshca/stdlib time %.2fx (%s the <= %.2fx target), peak heap %.2fx (%s the <= %.2fx target)\n",
		m.Entries, tr, verdict(tr <= crlTimeTarget), crlTimeTarget, hr, verdict(hr <= crlHeapTarget), crlHeapTarget)
	var deltas []time.Duration
	for _, r := range results[crlSizes[len(crlSizes)-1]].meshca {
		deltas = append(deltas, r.Delta)
	}
	slices.Sort(deltas)
	d := deltas[len(deltas)/2]
	fmt.Printf("delta CRL of %d changes against a %d base: %s (%s the <= %s target)\n", crlDeltaSize, m.Entries, d.Round(10*time.Microsecond), verdict(d <= crlDeltaTarget), crlDeltaTarget)
	if m.Bytes < s.Bytes-4 || m.Bytes > s.Bytes+4 {
		return errors.New("the two builders' CRLs differ in size by more than the ECDSA signature's variation")
	}
	return nil
}

// medianCRL is the run with the median time; its heap and RSS are that
// run's.
func medianCRL(rs []crlChildResult) crlChildResult {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b crlChildResult) int { return int(a.Time - b.Time) })
	return s[len(s)/2]
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func verdict(ok bool) string {
	if ok {
		return "meets"
	}
	return "MISSES"
}
