// Package pqc owns meshca's post-quantum certificate verification and the
// glue between its post-quantum key types and the rest of the CA:
//
//   - verifying a certificate's pure ML-DSA (RFC 9881) or composite ML-DSA
//     (draft-ietf-lamps-pq-composite-sigs-19) signature with the issuer's
//     SubjectPublicKeyInfo ([VerifyCertificateSignature]);
//   - Catalyst / ITU-T X.509 alternative signatures: parsing the
//     2.5.29.72/.73/.74 extensions ([ParseCatalyst]) and verifying the
//     alternative signature ([VerifyAltSignature]) over the
//     preTBSCertificate;
//   - walking a chain's post-quantum signatures up to a trusted PQ key
//     ([VerifyChain]);
//   - describing a certificate's post-quantum facts for `meshca inspect`
//     ([Describe]);
//   - key dispatch over ML-DSA, composite and classical keys: SPKI, PKCS#8
//     and PEM encodings and generation by algorithm name ([GenerateKey]).
//
// The keys themselves live in the sub-packages mldsa and composite. Both
// private key types implement crypto.Signer (full message, opts
// crypto.Hash(0)) and SignatureAlgorithm() pkix.AlgorithmIdentifier; both
// public key types have Verify(message, signature []byte) error.
//
// Certificate DER is split, and the preTBSCertificate derived, by
// ca/certenc ([certenc.ParseCertificate], [certenc.PreTBS]), which also
// defines the Catalyst extension OIDs: pqc depends on certenc, never the
// reverse.
//
// pqc does not build certificates (ca/certenc does), does not validate
// names, validity, key usage or policies (run crypto/x509 path validation
// for the classical chain), and holds no state.
package pqc
