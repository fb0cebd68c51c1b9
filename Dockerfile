# syntax=docker/dockerfile:1
# meshca's container image (README "Container image"). No Docker engine runs
# on the development machines: CI builds and pushes the image elsewhere
# (`make image` builds it where docker or buildah can). `make test` runs the
# go build line of the build stage below verbatim (test/image), so the flags
# are checked on every run.
#
# A cgo binary on distroless/base, not a static one on scratch: PKCS#11 key
# custody (keyStore.type pkcs11: go.step.sm/crypto/kms/pkcs11 on
# github.com/miekg/pkcs11) loads the HSM vendor's PKCS#11 module, a shared
# library, with dlopen(3) at run time (PKCS#11 v3.1 section 2.5: the module
# is a library loaded by the application). That needs cgo and the dynamic
# glibc loader: with CGO_ENABLED=0 kms/pkcs11 compiles to a stub that refuses
# every pkcs11: URI, and a statically linked glibc cannot dlopen a library
# built against a shared glibc. So the binary links glibc and nothing else
# (test/image checks its DT_NEEDED entries), and the runtime image is
# gcr.io/distroless/base-debian12: glibc, CA certificates and tzdata, no
# shell, no package manager. The build stage is Debian 12 (bookworm) too, so
# the binary needs no newer glibc than the runtime image has. Mount the HSM
# vendor's module into the pod (chart: extraVolumes).
#
# Read-only root filesystem: meshca writes only to /var/lib/meshca (store,
# softkms keys, admin socket) and /tmp; the chart mounts volumes on both.

# The Go toolchain of the build stage: the version `make test` builds with
# (test/image fails when they differ).
ARG GO_VERSION=1.26.8

FROM docker.io/library/golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# meshca:go-build (test/image runs this exact command; keep it on one line)
RUN CGO_ENABLED=1 GOFLAGS=-buildvcs=false go build -trimpath -ldflags="-s -w" -o /out/meshca ./cmd/meshca

FROM gcr.io/distroless/base-debian12:nonroot
COPY --from=build /out/meshca /usr/local/bin/meshca
# distroless's nonroot user; the chart runs the pod as 65532 too.
USER 65532:65532
# The Istio CA port and the ops port (/healthz, /readyz, /metrics, /crl/).
EXPOSE 15012 15014
ENTRYPOINT ["/usr/local/bin/meshca"]
CMD ["serve", "--config", "/etc/meshca/meshca.yaml"]
