package authority

import (
	"encoding/base64"
	"strings"
)

const (
	pemCertBegin = "-----BEGIN CERTIFICATE-----\n"
	pemCertEnd   = "-----END CERTIFICATE-----\n"
	pemLine      = 64 // base64 characters per line (RFC 7468 section 2)
)

// certificatePEM is pem.EncodeToMemory of a CERTIFICATE block without
// headers, as a string, built in one allocation: RFC 7468 section 2 text,
// 64 base64 characters per line, each line ending in "\n".
func certificatePEM(der []byte) string {
	n := base64.StdEncoding.EncodedLen(len(der))
	var b strings.Builder
	b.Grow(len(pemCertBegin) + n + (n+pemLine-1)/pemLine + len(pemCertEnd))
	b.WriteString(pemCertBegin)
	var line [pemLine]byte
	const chunk = pemLine / 4 * 3 // DER bytes per full line
	for len(der) > 0 {
		c := min(chunk, len(der))
		m := base64.StdEncoding.EncodedLen(c)
		base64.StdEncoding.Encode(line[:m], der[:c])
		b.Write(line[:m])
		b.WriteByte('\n')
		der = der[c:]
	}
	b.WriteString(pemCertEnd)
	return b.String()
}
