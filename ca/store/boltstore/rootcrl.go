package boltstore

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/meshca/meshca/ca/store"
)

// The root CRLs meshca took (store.RootCRLs): one record per issuer key in
// its own bucket, a byte that is 1 when a number follows, the number
// (store.RootCRLNumberBytes bytes), then the CRL's DER. The bucket is
// created by the first call, so an older store needs no migration.
var bucketRootCRLs = []byte("root_crls")

var _ store.RootCRLs = (*Store)(nil)

// KeepRootCRL implements store.RootCRLs: the record is compared and
// replaced in one fsynced transaction; bbolt runs one writer at a time.
// A CRL identical to the one stored is answered from a read. A record
// that does not decode is replaced.
func (s *Store) KeepRootCRL(ctx context.Context, issuer string, c store.RootCRL) ([]byte, error) {
	num, replaces, err := store.ValidateRootCRL(issuer, c)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cur, err := s.GetRootCRL(ctx, issuer); err == nil && bytes.Equal(cur, c.DER) {
		return cur, nil
	}
	var kept []byte
	err = s.w.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketRootCRLs)
		if err != nil {
			return err
		}
		curNum, curDER, ok, err := decodeRootCRL(b.Get([]byte(issuer)))
		if err == nil && ok && !store.RootCRLReplaces(num, replaces, curNum) {
			kept = curDER
			return nil
		}
		v := make([]byte, 0, 1+len(num)+len(c.DER))
		if num != nil {
			v = append(append(v, 1), num...)
		} else {
			v = append(v, 0)
		}
		kept = bytes.Clone(c.DER)
		return b.Put([]byte(issuer), append(v, c.DER...))
	})
	if err != nil {
		return nil, err
	}
	return kept, nil
}

// GetRootCRL implements store.RootCRLs.
func (s *Store) GetRootCRL(_ context.Context, issuer string) ([]byte, error) {
	if err := store.ValidateBundleName(issuer); err != nil {
		return nil, fmt.Errorf("root CRL issuer key: %w", err)
	}
	var der []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRootCRLs)
		if b == nil {
			return store.ErrNotFound
		}
		_, d, ok, err := decodeRootCRL(b.Get([]byte(issuer)))
		if err != nil {
			return err
		}
		if !ok {
			return store.ErrNotFound
		}
		der = d
		return nil
	})
	return der, err
}

// decodeRootCRL splits a record, copying out of bbolt's memory; ok is
// false for none.
func decodeRootCRL(v []byte) (number, der []byte, ok bool, err error) {
	switch {
	case v == nil:
		return nil, nil, false, nil
	case len(v) > 1 && v[0] == 0:
		return nil, bytes.Clone(v[1:]), true, nil
	case len(v) > 1+store.RootCRLNumberBytes && v[0] == 1:
		return bytes.Clone(v[1 : 1+store.RootCRLNumberBytes]), bytes.Clone(v[1+store.RootCRLNumberBytes:]), true, nil
	}
	return nil, nil, false, fmt.Errorf("root CRL record of %d bytes does not decode", len(v))
}
