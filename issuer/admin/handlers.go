package admin

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/store"
)

// The wire: paths and bodies shared by Server and Client.
const (
	pathRecords = "/v1/records"
	pathSign    = "/v1/sign"
)

// SignRequest is the body of POST /v1/sign. The requester is not part of
// it: the server takes it from the socket's peer.
type SignRequest struct {
	// CSR is the PEM or DER CSR (base64 in JSON).
	CSR []byte `json:"csr"`
	// Identity is the SPIFFE ID to issue to.
	Identity string `json:"identity"`
	// TTL is a Go duration ("12h"); empty or zero means the default.
	TTL string `json:"ttl,omitempty"`
	// Profile is the leaf profile; empty means issuance.profile.
	Profile string `json:"profile,omitempty"`
}

// SignResponse is the chain in Istio's order (see authority.Result.Chain).
type SignResponse struct {
	Chain []string `json:"chain"`
}

// errorBody is every non-2xx response.
type errorBody struct {
	Error string `json:"error"`
}

type handler struct {
	signer      Signer
	records     Records
	revoker     Revoker
	revocations RevocationLister
	crls        CRLSource
	statusSrc   StatusSource
	cacerts     CACertsSource
	rotations   Rotations
	td          spiffeid.TrustDomain
	log         *slog.Logger
	audit       *audit.Logger
}

// routes registers the admin routes behind az; sign and cacerts only when
// local (the socket): remote admins revoke and read, workloads sign
// through the gRPC port, and cacerts is of use only beside the key files.
func (h *handler) routes(az authorizer, local bool) http.Handler {
	mux := http.NewServeMux()
	route := func(pattern string, act Action, fn http.HandlerFunc) {
		mux.Handle(pattern, guard(az, h.audit, act, fn))
	}
	route("GET "+pathRecords, ActListRecords, h.list)
	route("GET "+pathRecords+"/{serial}", ActGetRecord, h.get)
	route("POST "+pathRevocations, ActRevoke, h.revoke)
	route("GET "+pathRevocations, ActListRevocations, h.listRevocations)
	route("GET "+pathCRLs, ActListCRLs, h.listCRLs)
	route("GET "+pathCRLs+"/{scope}", ActGetCRL, h.getCRL)
	route("GET "+pathStatus, ActGetStatus, h.status)
	h.rotationRoutes(route, local)
	if local {
		route("POST "+pathSign, ActSign, h.sign)
		route("GET "+pathCACerts, ActGetCACerts, h.caCerts)
	}
	return closeUnlessAuthorized(mux)
}

// closeUnlessAuthorized ends the connection after every response that guard
// did not authorize (401, 403, an unknown route): a peer that has not
// authenticated gets no keep-alive, so it holds its connection slot for
// the header timeout at most, never for the idle timeout.
func closeUnlessAuthorized(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		next.ServeHTTP(w, r)
	})
}

// CheckSignTTL refuses a negative lifetime asked of 'meshca sign': a
// typing error there, where Istio's CreateCertificate takes a
// validity_duration of 0 or less as "the default". Zero asks for
// issuance.defaultCertTTL.
func CheckSignTTL(ttl time.Duration) error {
	if ttl < 0 {
		return fmt.Errorf("%s is negative: give the certificate's lifetime (e.g. 12h), or leave it out for issuance.defaultCertTTL", ttl)
	}
	return nil
}

func (h *handler) sign(w http.ResponseWriter, r *http.Request) {
	var req SignRequest
	if !decodeBody(w, r, &req, "sign request") {
		return
	}
	// The identity is checked here as 'meshca sign' checks it offline: the
	// client is never trusted to have done it.
	id, err := identity.Parse(req.Identity)
	if err != nil {
		writeError(w, http.StatusBadRequest, "--identity: "+err.Error())
		return
	}
	if err := identity.CheckWorkload(id, h.td); err != nil {
		writeError(w, http.StatusBadRequest, "--identity: "+err.Error())
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil {
			writeError(w, http.StatusBadRequest, "--ttl: "+err.Error())
			return
		}
		if err := CheckSignTTL(ttl); err != nil {
			writeError(w, http.StatusBadRequest, "--ttl: "+err.Error())
			return
		}
	}
	var leaf profile.Name
	if req.Profile != "" {
		if leaf, err = profile.Parse(req.Profile); err != nil {
			writeError(w, http.StatusBadRequest, "--profile: "+err.Error())
			return
		}
	}
	if len(req.CSR) == 0 {
		writeError(w, http.StatusBadRequest, "--csr: the CSR is empty")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), signTimeout)
	defer cancel()
	res, err := h.signer.Sign(ctx, authority.Request{
		CSR: req.CSR, Identity: id.URL(), TTL: ttl, Requester: requesterOf(r), Profile: leaf,
	})
	if err != nil {
		writeError(w, caerr.CodeOf(err).HTTP(), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, SignResponse{Chain: res.Chain})
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	serial := r.PathValue("serial")
	if _, err := hex.DecodeString(serial); err != nil || serial == "" {
		// The store's own wording, so that the CLI prints what it prints offline.
		writeError(w, http.StatusBadRequest, fmt.Sprintf("serial %q is not hex", serial))
		return
	}
	rec, err := h.records.GetIssuance(r.Context(), serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case err != nil:
		h.log.ErrorContext(r.Context(), "admin: read record", "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		writeJSON(w, http.StatusOK, rec)
	}
}

// list streams the records as JSON lines.
func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	streamJSONLines(w, r, h.log, "records", func(fn func(any) bool) error {
		return h.records.ListIssuances(r.Context(), func(rec store.Issuance) bool { return fn(rec) })
	})
}

// streamJSONLines writes each item that list yields as one JSON line. An
// error after the first item aborts the response, so the client sees a
// truncated body, never a short list that looks complete.
func streamJSONLines(w http.ResponseWriter, r *http.Request, log *slog.Logger, what string, list func(fn func(any) bool) error) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	var werr error
	started := false
	err := list(func(v any) bool {
		if werr = enc.Encode(v); werr == nil && !started {
			// Send the status with the first item: a later failure then
			// reaches the client as a truncated body.
			started = true
			werr = http.NewResponseController(w).Flush()
		}
		return werr == nil
	})
	if err == nil && werr == nil {
		if !started {
			w.WriteHeader(http.StatusOK)
		}
		return
	}
	if !started {
		writeError(w, http.StatusInternalServerError, errors.Join(err, werr).Error())
		return
	}
	log.WarnContext(r.Context(), "admin: listing aborted", "what", what, "err", errors.Join(err, werr))
	panic(http.ErrAbortHandler)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	if sw, ok := w.(*statusWriter); ok && sw.onError != nil {
		sw.onError(msg)
	}
	writeJSON(w, code, errorBody{Error: msg})
}

// recoverPanics answers a panicking request with 500 and logs the stack, so
// that no request ends the service. http.ErrAbortHandler passes through:
// it is how a handler drops a response on purpose.
func recoverPanics(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler {
				panic(p)
			}
			log.ErrorContext(r.Context(), "panic in admin handler", "route", r.Pattern, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			writeError(w, http.StatusInternalServerError, "internal error")
		}()
		next.ServeHTTP(w, r)
	})
}
