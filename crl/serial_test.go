package crl

import (
	"bytes"
	"testing"
)

func TestSerialBytes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []byte
	}{
		{"01", []byte{1}},
		{"7f", []byte{0x7f}},
		{"80", []byte{0x80}},
		{"00ff", []byte{0xff}},
		{"ABCDEF", []byte{0xab, 0xcd, 0xef}},
		{"abc", []byte{0x0a, 0xbc}},
		{"00", []byte{0}},
		{"0102030405060708090a0b0c0d0e0f1011121314", []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}},
	} {
		got, err := SerialBytes(c.in)
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("SerialBytes(%q) = %x, %v; want %x", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "xyz", "01:02", " 01", "0102030405060708090a0b0c0d0e0f101112131415"} {
		if got, err := SerialBytes(bad); err == nil {
			t.Errorf("SerialBytes(%q) = %x, want an error", bad, got)
		}
	}
}
