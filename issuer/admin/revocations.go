package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/store"
)

// revokeTimeout bounds one revocation: a durable commit, and for an
// identity the index walk.
const revokeTimeout = 30 * time.Second

// decodeBody reads one JSON object of at most MaxBodyBytes into v; it
// answers the error itself and returns false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, what string) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", MaxBodyBytes))
			return false
		}
		writeError(w, http.StatusBadRequest, "request body is not a "+what+": "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "request body holds more than one JSON object")
		return false
	}
	return true
}

func (h *handler) revoke(w http.ResponseWriter, r *http.Request) {
	if h.revoker == nil {
		writeError(w, http.StatusServiceUnavailable, "revocation is not available on this server")
		return
	}
	var body RevokeBody
	if !decodeBody(w, r, &body, "revocation request") {
		return
	}
	req, err := body.Request()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	req.Requester = requesterOf(r)
	ctx, cancel := context.WithTimeout(r.Context(), revokeTimeout)
	defer cancel()
	recs, err := h.revoker.Revoke(ctx, req)
	if err != nil {
		code := caerr.CodeOf(err)
		if code == caerr.Internal {
			h.log.ErrorContext(r.Context(), "admin: revoke", "err", err)
		}
		writeError(w, code.HTTP(), err.Error())
		return
	}
	AuditRevocations(r.Context(), h.audit, req.Requester, req.Reason, recs)
	resp := RevokeResponse{Revocations: recs}
	if recs == nil {
		resp.Revocations = []store.Revocation{}
	}
	for _, rec := range recs {
		if rec.Existing {
			resp.AlreadyRevoked = append(resp.AlreadyRevoked, rec.Serial)
		}
	}
	if n, ok := h.revoker.(RevocationNoticer); ok {
		resp.Notices = n.RevocationNotices(ctx, recs)
	}
	writeJSON(w, http.StatusOK, resp)
}

// AuditRevocations writes one certificate.revoked audit line for each
// record a revocation by requester stored, and for a serial revoked
// before (store.Revocation.Existing) a certificate.revocation_repeated
// line with its original record and the reason asked for now: nothing
// changed, but the request was made, and a retry after a lost answer
// shows there that the first attempt took effect.
func AuditRevocations(ctx context.Context, al *audit.Logger, requester string, requested store.Reason, recs []store.Revocation) {
	for _, rec := range recs {
		r := audit.Revocation{
			Serial: rec.Serial, Kind: string(rec.Kind), Generation: rec.Generation, Identity: rec.Identity, Known: rec.Known,
			Reason: rec.Reason.String(), RevokedAt: rec.RevokedAt, Requester: requester, RecordedBy: rec.Requester,
		}
		if rec.Existing {
			al.RevocationRepeated(ctx, r, requested.String())
			continue
		}
		al.Revoked(ctx, r)
	}
}

// listRevocations streams the revocations with Seq > ?since (default 0)
// as JSON lines, like the records listing.
func (h *handler) listRevocations(w http.ResponseWriter, r *http.Request) {
	if h.revocations == nil {
		writeError(w, http.StatusServiceUnavailable, "revocations are not available on this server")
		return
	}
	var since uint64
	if s := r.URL.Query().Get("since"); s != "" {
		var err error
		if since, err = strconv.ParseUint(s, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("since %q is not a revocation sequence number", s))
			return
		}
	}
	streamJSONLines(w, r, h.log, "revocations", func(fn func(any) bool) error {
		return h.revocations.ListRevocations(r.Context(), since, func(rec store.Revocation) bool { return fn(rec) })
	})
}

func (h *handler) listCRLs(w http.ResponseWriter, _ *http.Request) {
	out := CRLsResponse{CRLs: []CRLInfo{}}
	if h.crls != nil {
		for _, c := range h.crls.CRLs() {
			out.CRLs = append(out.CRLs, crlInfo(c))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// getCRL answers the DER of the full CRL of a scope, or with ?delta=1 its
// delta CRL (RFC 5280 section 5.2.4).
func (h *handler) getCRL(w http.ResponseWriter, r *http.Request) {
	scope := r.PathValue("scope")
	delta := false
	switch v := r.URL.Query().Get("delta"); v {
	case "", "0", "false":
	case "1", "true":
		delta = true
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("delta %q must be 1 or 0", v))
		return
	}
	var scopes []string
	if h.crls != nil {
		for _, c := range h.crls.CRLs() {
			if c.Scope == scope && c.Delta == delta {
				w.Header().Set("Content-Type", "application/pkix-crl")
				w.Header().Set("X-Meshca-Crl-Number", strconv.FormatUint(c.Number, 10))
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(c.DER)
				return
			}
			if !slices.Contains(scopes, c.Scope) {
				scopes = append(scopes, c.Scope)
			}
		}
	}
	kind := "CRL"
	if delta {
		kind = "delta CRL"
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no %s for scope %q is served; scopes: %v", kind, scope, scopes))
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	var st Status
	if h.statusSrc != nil {
		st = h.statusSrc.Status(r.Context())
	}
	st.CRLs = []CRLInfo{}
	if st.GeneratedAt.IsZero() {
		st.GeneratedAt = time.Now().UTC()
	}
	if h.crls != nil {
		for _, c := range h.crls.CRLs() {
			ci := crlInfo(c)
			ci.Health = CRLHealth(c.NextUpdate, st.GeneratedAt)
			st.CRLs = append(st.CRLs, ci)
		}
	}
	writeJSON(w, http.StatusOK, st)
}
