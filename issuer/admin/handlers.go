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
	signer  Signer
	records Records
	td      spiffeid.TrustDomain
	log     *slog.Logger
	euid    int
}

func (h *handler) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+pathRecords, h.list)
	mux.HandleFunc("GET "+pathRecords+"/{serial}", h.get)
	mux.HandleFunc("POST "+pathSign, h.sign)
	return h.authorize(mux)
}

// authorize admits only meshca's own user (or root) when the kernel names
// the peer; the socket's mode already keeps everyone else out.
func (h *handler) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := r.Context().Value(peerKey{}).(peer)
		switch {
		case errors.Is(p.err, errPeerUnsupported):
		case p.err != nil:
			writeError(w, http.StatusForbidden, "cannot identify the connecting user")
			return
		case p.uid != h.euid && p.uid != 0:
			writeError(w, http.StatusForbidden, fmt.Sprintf("uid %d may not use this socket; run meshca as uid %d", p.uid, h.euid))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (h *handler) sign(w http.ResponseWriter, r *http.Request) {
	var req SignRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", MaxBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "request body is not a sign request: "+err.Error())
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "request body holds more than one JSON object")
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
	p, _ := r.Context().Value(peerKey{}).(peer)
	ctx, cancel := context.WithTimeout(r.Context(), signTimeout)
	defer cancel()
	res, err := h.signer.Sign(ctx, authority.Request{
		CSR: req.CSR, Identity: id.URL(), TTL: ttl, Requester: requester(p), Profile: leaf,
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

// list streams the records as JSON lines. An error after the first record
// aborts the response, so the client sees a truncated body, never a short
// list that looks complete.
func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	var werr error
	started := false
	err := h.records.ListIssuances(r.Context(), func(rec store.Issuance) bool {
		if werr = enc.Encode(rec); werr == nil && !started {
			// Send the status with the first record: a later failure then
			// reaches the client as a truncated body.
			started = true
			werr = http.NewResponseController(w).Flush()
		}
		return werr == nil
	})
	if err == nil && werr == nil {
		return
	}
	if !started {
		writeError(w, http.StatusInternalServerError, errors.Join(err, werr).Error())
		return
	}
	h.log.WarnContext(r.Context(), "admin: listing records aborted", "err", errors.Join(err, werr))
	panic(http.ErrAbortHandler)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
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
