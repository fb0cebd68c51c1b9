package crl

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// encoder streams one CertificateList into one buffer:
//
//	buf[:head]          room for the headers and fields before the entries
//	buf[head:head+rc]   the revokedCertificates elements, encoded once
//	buf[head+rc:]       crlExtensions, then signatureAlgorithm and signature
//
// tbs writes the fields before the entries backwards from head and the
// extensions after them, so that the TBSCertList (or the
// preTBSCertList) is one contiguous slice for the signer, and can be
// rewritten in place for the second signature of a Catalyst CRL.
type encoder struct {
	buf   []byte
	head  int
	rc    int // length of the revokedCertificates contents
	count int
	alg   []byte // signature AlgorithmIdentifier
	mid   []byte // issuer, thisUpdate, nextUpdate
	from  int    // where the last tbs begins in buf
}

// version v2: INTEGER 1 (RFC 5280 section 5.1.2.1).
var versionV2 = []byte{tagInteger, 1, 1}

// maxHeader is the longest identifier-and-length of a TLV: four length
// octets (maxDERLength).
const maxHeader = 6

// tailReserve is room kept after the entries for the extensions and the
// signatures (an ML-DSA-87 or composite signature is under 5 KB), so that
// they rarely make the buffer grow.
const tailReserve = 32 << 10

func (e *encoder) start(alg, issuer []byte, thisUpdate, nextUpdate time.Time) {
	e.alg = alg
	mid := make([]byte, 0, len(issuer)+2*17)
	mid = append(mid, issuer...)
	mid = appendTime(mid, thisUpdate)
	mid = appendTime(mid, nextUpdate)
	e.mid = mid
	// CertificateList and TBSCertList headers, version, signature,
	// issuer and times, revokedCertificates header.
	e.head = maxHeader + maxHeader + len(versionV2) + len(alg) + len(mid) + maxHeader
	e.buf = make([]byte, e.head, e.head+firstChunk)
}

// Chunks of the entry encoding: the first follows the head in buf, the
// others double up to maxChunk. A chunk is closed when an entry might not
// fit (maxEntryLen).
const (
	firstChunk  = 16 << 10
	maxChunk    = 1 << 20
	maxEntryLen = 2 + 2 + 1 + maxSerialLen + 2 + 15 + 2 + reasonCodeLen + invalidityDateLen
)

// addEntries encodes every entry the source yields. The entries go into
// chunks that never move, then (when there is more than one) into one
// buffer of the exact size: the peak memory is twice the encoding, where
// a growing slice would leave its earlier copies to the garbage
// collector.
func (e *encoder) addEntries(entries Entries) error {
	if entries == nil {
		return nil
	}
	var bad error
	var chunks [][]byte
	cur := e.buf[: e.head : e.head+firstChunk]
	n := 0
	err := entries(func(en Entry) bool {
		if cap(cur)-len(cur) < maxEntryLen {
			chunks = append(chunks, cur)
			cur = make([]byte, 0, min(2*cap(cur), maxChunk))
		}
		cur, bad = appendEntry(cur, &en)
		if bad != nil {
			return false
		}
		n++
		return true
	})
	if bad != nil {
		return bad
	}
	if err != nil {
		return fmt.Errorf("crl: entries: %w", err)
	}
	chunks = append(chunks, cur)
	total := 0
	for _, c := range chunks {
		total += len(c)
	}
	if total-e.head > maxDERLength/2 {
		return errors.New("crl: the revoked certificates do not fit a CRL")
	}
	e.count, e.rc = n, total-e.head
	if len(chunks) == 1 {
		e.buf = slices.Grow(cur, tailReserve)
		return nil
	}
	buf := make([]byte, 0, total+tailReserve)
	for i := range chunks {
		buf = append(buf, chunks[i]...)
		chunks[i] = nil // let the collector have it
	}
	e.buf = buf
	return nil
}

// tbs lays out the TBSCertList (RFC 5280 section 5.1) around the encoded
// entries and returns it; without the signature field (withSig false) it
// is the preTBSCertList of ITU-T X.509 clause 9.8.
//
//	TBSCertList ::= SEQUENCE { version, signature, issuer, thisUpdate,
//	    nextUpdate, revokedCertificates SEQUENCE OF ... OPTIONAL,
//	    crlExtensions [0] EXPLICIT Extensions OPTIONAL }
func (e *encoder) tbs(withSig bool, exts []extension) ([]byte, error) {
	extDER, err := marshalExtensions(exts)
	if err != nil {
		return nil, err
	}
	e.buf = append(e.buf[:e.head+e.rc], extDER...)

	content := len(versionV2) + len(e.mid) + len(extDER)
	if withSig {
		content += len(e.alg)
	}
	// "When there are no revoked certificates, the revoked certificates
	// list MUST be absent" (section 5.1.2.6).
	if e.count > 0 {
		content += headerLen(e.rc) + e.rc
	}
	if content > maxDERLength/2 {
		return nil, errors.New("crl: the CRL is too large")
	}
	prefix := make([]byte, 0, e.head)
	prefix = appendHeader(prefix, tagSequence, content)
	prefix = append(prefix, versionV2...)
	if withSig {
		prefix = append(prefix, e.alg...)
	}
	prefix = append(prefix, e.mid...)
	if e.count > 0 {
		prefix = appendHeader(prefix, tagSequence, e.rc)
	}
	e.from = e.head - len(prefix)
	copy(e.buf[e.from:], prefix)
	return e.buf[e.from:], nil
}

// certificateList wraps the last TBSCertList:
//
//	CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm,
//	    signatureValue BIT STRING }
func (e *encoder) certificateList(sig []byte) ([]byte, error) {
	tbsLen := len(e.buf) - e.from
	content := tbsLen + len(e.alg) + headerLen(len(sig)+1) + len(sig) + 1
	if content > maxDERLength {
		return nil, errors.New("crl: the CRL is too large")
	}
	hdr := appendHeader(make([]byte, 0, maxHeader), tagSequence, content)
	begin := e.from - len(hdr)
	copy(e.buf[begin:], hdr)
	b := append(e.buf, e.alg...)
	b = appendHeader(b, tagBitString, len(sig)+1)
	b = append(b, 0) // no unused bits
	b = append(b, sig...)
	e.buf = nil
	return b[begin:len(b):len(b)], nil
}
