package config

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration that reads and writes as a Go duration string
// ("24h", "90m") and also accepts whole days ("90d"), as operators write them.
type Duration struct{ time.Duration }

// ParseDuration parses s as a Go duration or as a whole number of days ("90d").
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil || n > maxDays {
			return 0, fmt.Errorf("invalid duration %q: want a number of days such as 90d, or a Go duration such as 2160h", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a Go duration such as 24h or 30m, or days such as 90d", s)
	}
	return d, nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// maxDays is the most whole days a time.Duration holds (about 292 years).
const maxDays = uint64(math.MaxInt64 / int64(24*time.Hour))

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return durationError(string(b))
	}
	v, err := ParseDuration(s)
	if err != nil {
		return durationError(strconv.Quote(s))
	}
	d.Duration = v
	return nil
}

// durationError describes a bad duration value. encoding/json adds the path
// of the key (issuance.maxCertTTL) to an *UnmarshalTypeError and to no other
// error, so that is what the message has to be.
func durationError(value string) error {
	return &json.UnmarshalTypeError{
		Value: value + ` (want a Go duration such as "24h" or "30m", or days such as "90d")`,
		Type:  reflect.TypeFor[Duration](),
	}
}

// Set implements pflag.Value so that flags can override durations.
func (d *Duration) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// Type implements pflag.Value.
func (d *Duration) Type() string { return "duration" }
