package logbatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sink records each write(2) it would have been, and can hold the first
// one until released.
type sink struct {
	mu      sync.Mutex
	writes  []string
	hold    chan struct{} // the first write blocks until it is closed
	entered chan struct{} // closed when the first write has begun
	fail    error         // returned by every write while set
}

func newSink() *sink { return &sink{entered: make(chan struct{})} }

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	first := len(s.writes) == 0
	s.writes = append(s.writes, string(p))
	fail := s.fail
	s.mu.Unlock()
	if first {
		close(s.entered)
		if s.hold != nil {
			<-s.hold
		}
	}
	if fail != nil {
		return 0, fail
	}
	return len(p), nil
}

func (s *sink) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.writes...)
}

func (s *sink) text() string { return strings.Join(s.all(), "") }

func wait(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not within 10s", what)
	}
}

func logger(s *sink) (*slog.Logger, *Writer) {
	w := New(s)
	return slog.New(w.Handler(slog.NewJSONHandler(w, nil))), w
}

func TestHandler_EveryLineIsWrittenBeforeTheLogCallReturns(t *testing.T) {
	s := newSink()
	log, _ := logger(s)
	for i := range 3 {
		log.Info("certificate.issued", "serial", i)
		require.Len(t, s.all(), i+1, "line %d reached the file descriptor before the call returned", i)
		require.Contains(t, s.all()[i], fmt.Sprintf(`"serial":%d}`, i))
	}
}

// The lines logged while a write is under way share the next write, and
// each of their calls still returns only once its line is written. An
// unbatched writer makes one write per line: 11 here.
func TestHandler_LinesLoggedDuringAWriteShareTheNextWrite(t *testing.T) {
	s := newSink()
	s.hold = make(chan struct{})
	log, _ := logger(s)

	first := make(chan struct{})
	go func() {
		log.Info("first")
		close(first)
	}()
	wait(t, s.entered, "the first line's write") // under way, and held

	const n = 10
	returned := make(chan int, n)
	for i := range n {
		go func() {
			log.Info("certificate.issued", "serial", i)
			returned <- i
		}()
	}
	// Every line is appended before the held write completes.
	w := log.Handler().(*handler).w
	require.Eventually(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return strings.Count(string(w.pending), "\n") == n
	}, 5*time.Second, time.Millisecond)
	select {
	case i := <-returned:
		t.Fatalf("the call for line %d returned before its line was written", i)
	case <-first:
		t.Fatal("the first call returned before its write completed")
	case <-time.After(50 * time.Millisecond):
	}

	close(s.hold)
	wait(t, first, "the first call's return")
	for range n {
		select {
		case <-returned:
		case <-time.After(10 * time.Second):
			t.Fatal("a call did not return within 10s of the write")
		}
	}
	writes := s.all()
	require.Len(t, writes, 2, "one write for the first line, one for the ten logged during it")
	require.Equal(t, 1, strings.Count(writes[0], "\n"))
	require.Equal(t, n, strings.Count(writes[1], "\n"))
	for i := range n {
		require.Equal(t, 1, strings.Count(writes[1], fmt.Sprintf(`"serial":%d}`+"\n", i)), "line %d once, whole", i)
	}
}

func TestWriter_ConcurrentLinesAreWrittenWholeAndOnce(t *testing.T) {
	s := newSink()
	log, w := logger(s)
	const goroutines, lines = 32, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := log.With("g", g)
			for i := range lines {
				l.Info("line", "i", i)
			}
		}()
	}
	wg.Wait()
	require.NoError(t, w.Close())

	seen := map[string]int{}
	for _, wr := range s.all() {
		require.True(t, strings.HasSuffix(wr, "\n"), "a write ends with a whole line")
		for _, line := range strings.Split(strings.TrimSuffix(wr, "\n"), "\n") {
			require.True(t, strings.HasPrefix(line, "{") && strings.HasSuffix(line, "}"), "whole line: %q", line)
			var g, i int
			_, err := fmt.Sscanf(line[strings.Index(line, `"g":`):], `"g":%d,"i":%d}`, &g, &i)
			require.NoError(t, err, line)
			seen[fmt.Sprint(g, "/", i)]++
		}
	}
	require.Len(t, seen, goroutines*lines)
	for k, n := range seen {
		require.Equal(t, 1, n, "line %s", k)
	}
	t.Logf("%d lines in %d writes", goroutines*lines, len(s.all()))
}

func TestWriter_AFailedWriteIsReturnedAndDropsOnlyItsBatch(t *testing.T) {
	s := newSink()
	w := New(s)
	h := w.Handler(slog.NewJSONHandler(w, nil))
	s.fail = errors.New("EPIPE")
	err := h.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelInfo, "lost", 0))
	require.ErrorContains(t, err, "EPIPE")

	s.mu.Lock()
	s.fail = nil
	s.mu.Unlock()
	require.NoError(t, h.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelInfo, "kept", 0)))
	writes := s.all()
	require.Len(t, writes, 2)
	require.Contains(t, writes[1], `"msg":"kept"`)
	require.NotContains(t, writes[1], "lost", "the failed batch is not written again")
}

func TestWriter_CloseWritesWhatWaitsAndLaterLinesGoStraightThrough(t *testing.T) {
	s := newSink()
	w := New(s)
	_, err := w.Write([]byte("appended, not yet written\n"))
	require.NoError(t, err)
	require.Empty(t, s.all())
	require.NoError(t, w.Close())
	require.Equal(t, []string{"appended, not yet written\n"}, s.all())

	_, err = w.Write([]byte("after close\n"))
	require.NoError(t, err)
	require.Equal(t, "appended, not yet written\nafter close\n", s.text())
}

func TestHandler_WithAttrsAndGroupsKeepWriting(t *testing.T) {
	s := newSink()
	log, _ := logger(s)
	log.With("log", "audit").WithGroup("g").Info("m", "k", "v")
	require.Len(t, s.all(), 1)
	require.Contains(t, s.all()[0], `"log":"audit","g":{"k":"v"}`)
}
