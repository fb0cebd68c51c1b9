// Package httpget is the plain HTTP GET of tests: the status code and the
// whole body of one request, the test failed on a transport error.
package httpget

import (
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// Get fetches url and returns the status code and the body.
func Get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}
