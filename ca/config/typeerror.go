package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// typeError says what is wrong with a value of the wrong kind in the
// file, by its key and in YAML's terms (not Go's struct and type names);
// nil when err is not such an error.
func typeError(err error) error {
	ute := (*json.UnmarshalTypeError)(nil)
	if !errors.As(err, &ute) || ute.Field == "" {
		return nil
	}
	if ute.Type == reflect.TypeFor[Duration]() {
		return fmt.Errorf("%s: %s", ute.Field, ute.Value) // durationError says what it wants
	}
	if n, ok := strings.CutPrefix(ute.Value, "number "); ok && kindName(ute.Type) == "whole number" {
		return fmt.Errorf("%s: %s is not a whole number in range; see deploy/examples/meshca.yaml", ute.Field, n)
	}
	got := map[string]string{"array": "list", "object": "mapping", "bool": "boolean"}[ute.Value]
	if got == "" {
		got = ute.Value
	}
	return fmt.Errorf("%s: a %s cannot be a %s; see deploy/examples/meshca.yaml", ute.Field, got, kindName(ute.Type))
}

// kindName names a configuration value's Go type in YAML terms.
func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "whole number"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Slice, reflect.Array:
		return "list"
	case reflect.Map, reflect.Struct:
		return "mapping of keys"
	}
	return t.String()
}
