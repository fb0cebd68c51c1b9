// Package certenc owns the DER encoding and signing of every certificate
// meshca issues, for all profiles, in one pass:
//
//   - classical: RSA, ECDSA (P-256/P-384/P-521) and Ed25519 issuers, with a
//     TBSCertificate byte-identical to what crypto/x509.CreateCertificate
//     emits for the same template (the parity tests hold it to that);
//   - pure ML-DSA (RFC 9881) and composite ML-DSA
//     (draft-ietf-lamps-pq-composite-sigs-19): the issuer is an
//     [AlgorithmSigner] that names its own AlgorithmIdentifier and signs the
//     whole TBS itself;
//   - Catalyst (ITU-T X.509 alternative signatures): [BuildCatalyst] adds
//     2.5.29.72 subjectAltPublicKeyInfo (when given), 2.5.29.73
//     altSignatureAlgorithm and 2.5.29.74 altSignatureValue, all
//     non-critical, signs the preTBSCertificate with the alternative issuer
//     key, then signs the full TBS once with the classical issuer key.
//
// [NewSigner] exports the same signing path for any other DER message
// (crl/ signs TBSCertLists and preTBSCertLists with it): one
// implementation of the algorithm choice and of the [VerifyMode]
// self-check for everything meshca signs.
//
// certenc is also meshca's one parser of certificate DER
// ([ParseCertificate], [ParseTBS], [PreTBS]); ca/pqc verifies with it.
// SubjectPublicKeyInfo and AlgorithmIdentifier envelopes come from
// ca/internal/der, shared with the post-quantum key packages.
//
// certenc is mechanism, not policy: it encodes exactly the fields it is
// given. It does not choose serials, validity, key usages or SANs, does not
// derive key identifiers behind the caller's back (see [SubjectKeyID]),
// and does not store keys. It must not touch storage, configuration or the
// network, and it does not import ca/pqc; ca/pqc owns the ML-DSA and
// composite keys and signers, and the CA core owns issuance policy.
package certenc
