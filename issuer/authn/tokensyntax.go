package authn

import (
	"encoding/base64"
	"encoding/json"
	"strings"
)

// MaxServiceAccountTokenSize bounds a bearer token that is sent to an
// apiserver. A projected ServiceAccount token is a JWT of about 1 KiB (a
// pod-bound one a little more); a larger one is refused unreviewed.
const MaxServiceAccountTokenSize = 8 << 10

// Reasons a token is refused before any TokenReview (the values of the
// reason label of MetricRejectedBeforeReview).
const (
	// PreReviewTooLarge: the token is larger than MaxServiceAccountTokenSize.
	PreReviewTooLarge = "too_large"
	// PreReviewMalformed: the token is not a compact JWS (RFC 7515 §7.1)
	// with a JSON header naming an algorithm and a JSON object payload.
	PreReviewMalformed = "malformed"
	// PreReviewDeadline: the caller's deadline leaves less than MinWait.
	PreReviewDeadline = "deadline"
	// PreReviewOverloaded: every TokenReview slot (MaxInFlight) was in use.
	PreReviewOverloaded = "overloaded"
	// PreReviewPerPeer: the caller's address already has
	// MaxInFlightPerPeer reviews in flight.
	PreReviewPerPeer = "per_peer"
)

var preReviewReasons = []string{PreReviewTooLarge, PreReviewMalformed, PreReviewDeadline, PreReviewOverloaded, PreReviewPerPeer}

// checkTokenSyntax is the cheap check made before a token costs a review:
// a ServiceAccount token is a JWT (RFC 7519) in the JWS compact
// serialization, three base64url segments without padding (RFC 7515 §2),
// whose header is a JSON object with an "alg" other than "none" and whose
// payload is a JSON object. It returns "" when the token may be reviewed,
// else the PreReview* reason. It trusts nothing it reads.
func checkTokenSyntax(token string) string {
	if len(token) > MaxServiceAccountTokenSize {
		return PreReviewTooLarge
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return PreReviewMalformed
	}
	var segs [3][]byte
	for i, p := range parts {
		b, err := base64.RawURLEncoding.Strict().DecodeString(p)
		if err != nil || len(b) == 0 {
			return PreReviewMalformed
		}
		segs[i] = b
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if !isJSONObject(segs[0]) || json.Unmarshal(segs[0], &header) != nil || header.Alg == "" || strings.EqualFold(header.Alg, "none") {
		return PreReviewMalformed
	}
	if !isJSONObject(segs[1]) {
		return PreReviewMalformed
	}
	return ""
}

func isJSONObject(b []byte) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil && m != nil
}
