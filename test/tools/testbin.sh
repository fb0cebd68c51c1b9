#!/usr/bin/env bash
# testbin.sh builds the real programs that meshca's integration tests run —
# kube-apiserver and etcd (test/kubeenv) and Vault (test/vaultenv) — from
# source, through the Go module proxy, and caches them by version outside
# the checkout:
#
#   ${MESHCA_CACHE:-$HOME/.cache/meshca}/k8s-<K8S>/{kube-apiserver,etcd}
#   ${MESHCA_CACHE:-$HOME/.cache/meshca}/vault-<VAULT>/vault
#
#   ${MESHCA_CACHE:-$HOME/.cache/meshca}/istiod-<ISTIO>-<SOURCE DIGEST>/istiod-ca
#   ${MESHCA_CACHE:-$HOME/.cache/meshca}/istiod-ra-<ISTIO>-<SOURCE DIGEST>/istiod-ra
#
# It then points the git-ignored symlinks bin/k8s-<K8S>, bin/vault-<VAULT>
# and bin/istiod-<ISTIO> in the repository root at those folders. istiod-ca
# (test/tools/istiod: istiod's own CA server, the peer of `make bench`) is
# built only when asked for ('istiod'), not by 'all': the tests don't need it.
# istiod-ra (test/tools/istiod/ra: istiod's own Kubernetes RA, which the CSR
# signer's e2e test drives; bin/istiod-ra) is part of 'all' and reuses the
# istio.io/istio module; it builds in well under a minute once that is
# downloaded.
#
# It is idempotent: a binary that is cached and reports the expected version
# is not rebuilt. Each binary is built into a temporary file in the cache
# folder and renamed into place only once it runs, so an interrupted build
# never leaves a broken cache. The builds run one after the other (the
# machine has 2 cores); the first run takes 10-15 minutes in all (about 5
# for kube-apiserver, 1 for etcd, 4-10 for Vault with its module download).
#
# helm (the chart tests in deploy/helm: lint, template, apply) is Helm
# v4 (HELM_VERSION below), installed with `go install helm.sh/helm/v4/cmd/helm@v<HELM>`
# straight from the module proxy (helm's go.mod has no replace directives)
# into ${MESHCA_CACHE:-$HOME/.cache/meshca}/helm-<HELM>/helm, reached through
# bin/helm-<HELM>; it takes about 2-3 minutes on 2 cores the first time.
#
# promcrds: prometheus-operator's ServiceMonitor and PrometheusRule CRDs,
# which the chart tests install in the test apiserver. The module proxy
# serves prometheus-operator's API types (pkg/apis/monitoring) but not the
# module that holds its CRD manifests, so controller-gen (the generator
# prometheus-operator uses) makes them from those types, both pinned in
# test/tools/promcrds/go.mod, into
#   ${MESHCA_CACHE:-$HOME/.cache/meshca}/prometheus-operator-crds-<MONITORING>/
# reached through bin/prometheus-operator-crds (about 1-2 minutes).
#
# Usage: bash test/tools/testbin.sh [k8s|vault|istiod|istiod-ra|helm|promcrds|all]
#   (default: all = k8s, vault, istiod-ra, helm and promcrds)
set -euo pipefail

K8S_VERSION=1.37.2
VAULT_VERSION=1.21.0
# Helm v4 (helm.sh/helm/v4): see README "Helm chart" for why not v3.22.0.
HELM_VERSION=4.3.2

tools=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$tools/../.." && pwd)
cache=${MESHCA_CACHE:-$HOME/.cache/meshca}
what=${1:-all}

log() { printf 'testbin: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case $what in
all | k8s | vault | istiod | istiod-ra | helm | promcrds) ;;
*) die "unknown target '$what' (want k8s, vault, istiod, istiod-ra, helm, promcrds or all)" ;;
esac

command -v go >/dev/null || die "the go command is not on PATH"

# One testbin at a time per cache (two checkouts may share it).
mkdir -p "$cache"
exec 9>"$cache/.lock"
if command -v flock >/dev/null; then
	flock 9
fi

# run CMD... runs CMD as a job in its own process group and waits for it, so
# that a signal to this script stops the whole build at once; the EXIT trap
# then removes the half-built binary.
child=
run() {
	set -m
	"$@" &
	child=$!
	set +m
	local rc=0
	wait "$child" || rc=$?
	child=
	return "$rc"
}
on_signal() {
	if [[ -n $child ]]; then
		kill -TERM -- "-$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
	exit 130
}
trap on_signal INT TERM HUP

# Modules come from the configured module proxy only: drop the "direct" and
# "off" fallbacks so that nothing is fetched straight from a VCS host.
proxies=()
IFS=',|' read -r -a entries <<<"$(go env GOPROXY)"
for p in "${entries[@]}"; do
	case $p in '' | direct | off) ;; *) proxies+=("$p") ;; esac
done
((${#proxies[@]})) || die "GOPROXY ($(go env GOPROXY)) names no module proxy"
GOPROXY=$(IFS=,; echo "${proxies[*]}")
export GOPROXY
# Each tool is its own module with a complete go.sum; never touch go.work,
# never switch toolchains, and build static binaries without VCS stamping.
export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"

# mod_version prints the version of module $2 that tools module $1 requires.
mod_version() {
	(cd "$tools/$1" && go list -m -f '{{.Version}}' "$2")
}

# build NAME MODULE_DIR DEST_DIR WANT_VERSION_SUBSTRING LABEL [go build flags...]
build() {
	local name=$1 moddir=$2 destdir=$3 want=$4 label=$5
	shift 5
	local dest=$destdir/$name
	if [[ -x $dest ]] && out=$("$dest" --version 2>&1) && [[ $out == *"$want"* ]]; then
		log "$name: cached $dest ($label)"
		return 0
	fi
	mkdir -p "$destdir"
	rm -f "$destdir/.$name".* # left by an interrupted build (we hold the lock)
	local tmp
	tmp=$(mktemp "$destdir/.$name.XXXXXX")
	# shellcheck disable=SC2064 # expand $tmp now
	trap "rm -f '$tmp'" EXIT
	local start=$SECONDS
	log "$name: downloading modules for $label through the module proxy"
	run go -C "$tools/$moddir" mod download || die "$name: go mod download failed"
	log "$name: building $label from source into $dest ($ETA)"
	run go -C "$tools/$moddir" build -trimpath "$@" -o "$tmp" . || die "$name: go build failed"
	out=$("$tmp" --version 2>&1) || die "$name: the built binary does not run: $out"
	[[ $out == *"$want"* ]] || die "$name: built binary reports '$out', want '$want'"
	chmod 0755 "$tmp"
	mv -f "$tmp" "$dest"
	trap - EXIT
	log "$name: built in $((SECONDS - start))s: ${out%%$'\n'*}"
}

# link makes bin/NAME in the repository root a symlink to the cache folder.
link() {
	local name=$1 target=$2
	local l=$root/bin/$name
	mkdir -p "$root/bin"
	if [[ -e $l && ! -L $l ]]; then
		die "$l exists and is not a symlink; remove it and run again"
	fi
	ln -sfn "$target" "$l"
	log "bin/$name -> $target"
}

if [[ $what == all || $what == k8s ]]; then
	kdir=$cache/k8s-$K8S_VERSION
	got=$(mod_version kube k8s.io/kubernetes)
	[[ $got == "v$K8S_VERSION" ]] || die "test/tools/kube requires k8s.io/kubernetes $got, this script builds v$K8S_VERSION"
	ETA="about 5-6 minutes on 2 cores the first time"
	build kube-apiserver kube "$kdir" "Kubernetes v$K8S_VERSION" "kube-apiserver v$K8S_VERSION" \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=${K8S_VERSION%%.*} -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$K8S_VERSION")"
	etcd_version=$(mod_version etcd go.etcd.io/etcd/server/v3)
	ETA="about 1 minute the first time"
	build etcd etcd "$kdir" "etcd Version: ${etcd_version#v}" "etcd $etcd_version" -ldflags "-s -w"
	link "k8s-$K8S_VERSION" "$kdir"
fi

if [[ $what == all || $what == vault ]]; then
	vdir=$cache/vault-$VAULT_VERSION
	got=$(mod_version vault github.com/hashicorp/vault)
	[[ $got == "v$VAULT_VERSION" ]] || die "test/tools/vault requires github.com/hashicorp/vault $got, this script builds v$VAULT_VERSION"
	ETA="about 4 minutes on 2 cores the first time, plus the module download"
	build vault vault "$vdir" "Vault v$VAULT_VERSION" "vault v$VAULT_VERSION" -ldflags "-s -w"
	link "vault-$VAULT_VERSION" "$vdir"
fi

if [[ $what == all || $what == istiod-ra ]]; then
	istio=$(mod_version istiod istio.io/istio)
	# istiod's own Kubernetes RA (test/tools/istiod/ra), which the CSR
	# signer's e2e test drives: cached like istiod-ca, by commit and digest.
	src=$(cat "$tools/istiod/ra/main.go" "$tools/istiod/go.mod" | sha256sum | cut -c1-8)
	rdir=$cache/istiod-ra-${istio##*-}-$src
	ETA="about 1-3 minutes on 2 cores the first time, plus the module download"
	build istiod-ra istiod/ra "$rdir" "istio.io/istio $istio" "istiod's Kubernetes RA (istio.io/istio $istio)" -ldflags "-s -w"
	link istiod-ra "$rdir"
fi

if [[ $what == all || $what == helm ]]; then
	hdir=$cache/helm-$HELM_VERSION
	want="v$HELM_VERSION"
	if [[ -x $hdir/helm ]] && out=$("$hdir/helm" version --template '{{.Version}}' 2>&1) && [[ $out == "$want" ]]; then
		log "helm: cached $hdir/helm (Helm $want)"
	else
		mkdir -p "$hdir"
		rm -rf "$hdir"/.helm.* # left by an interrupted build (we hold the lock)
		htmp=$(mktemp -d "$hdir/.helm.XXXXXX")
		# shellcheck disable=SC2064 # expand $htmp now
		trap "rm -rf '$htmp'" EXIT
		start=$SECONDS
		log "helm: installing Helm $want from the module proxy into $hdir (about 2-3 minutes on 2 cores the first time)"
		# go install MODULE@VERSION builds outside any module: -mod does not apply.
		# Helm's own Makefile stamps the version with -X; without it
		# `helm version` reports only "v4.3".
		run env GOFLAGS=-buildvcs=false GOBIN="$htmp" go install -trimpath \
			-ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$want" \
			"helm.sh/helm/v4/cmd/helm@$want" || die "helm: go install failed"
		out=$("$htmp/helm" version --template '{{.Version}}' 2>&1) || die "helm: the built binary does not run: $out"
		[[ $out == "$want" ]] || die "helm: built binary reports '$out', want '$want'"
		mv -f "$htmp/helm" "$hdir/helm"
		rm -rf "$htmp"
		trap - EXIT
		log "helm: built in $((SECONDS - start))s: $out"
	fi
	link "helm-$HELM_VERSION" "$hdir"
fi

if [[ $what == all || $what == promcrds ]]; then
	mon=$(mod_version promcrds github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring)
	ctl=$(mod_version promcrds sigs.k8s.io/controller-tools)
	pdir=$cache/prometheus-operator-crds-${mon#v}
	stamp="prometheus-operator/pkg/apis/monitoring $mon, controller-gen $ctl"
	crds=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml)
	cached=1
	for f in "${crds[@]}"; do [[ -s $pdir/$f ]] || cached=0; done
	[[ -f $pdir/VERSION && $(cat "$pdir/VERSION") == "$stamp" ]] || cached=0
	if ((cached)); then
		log "promcrds: cached $pdir ($stamp)"
	else
		rm -rf "$cache"/.promcrds.* # left by an interrupted run (we hold the lock)
		ptmp=$(mktemp -d "$cache/.promcrds.XXXXXX")
		# shellcheck disable=SC2064 # expand $ptmp now
		trap "rm -rf '$ptmp'" EXIT
		start=$SECONDS
		log "promcrds: generating the ServiceMonitor and PrometheusRule CRDs ($stamp; about 1-2 minutes the first time)"
		run go -C "$tools/promcrds" mod download || die "promcrds: go mod download failed"
		run go -C "$tools/promcrds" tool controller-gen crd:crdVersions=v1 \
			paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 \
			"output:crd:dir=$ptmp/all" || die "promcrds: controller-gen failed"
		mkdir "$ptmp/out"
		for f in "${crds[@]}"; do
			[[ -s $ptmp/all/$f ]] || die "promcrds: controller-gen made no $f"
			mv "$ptmp/all/$f" "$ptmp/out/$f"
		done
		printf '%s' "$stamp" >"$ptmp/out/VERSION"
		rm -rf "$pdir"
		mv "$ptmp/out" "$pdir"
		rm -rf "$ptmp"
		trap - EXIT
		log "promcrds: generated in $((SECONDS - start))s into $pdir"
	fi
	link prometheus-operator-crds "$pdir"
fi

if [[ $what == istiod ]]; then
	istio=$(mod_version istiod istio.io/istio)
	# The cache key is the pseudo-version's commit (its last 12 hex digits)
	# and a digest of the tools module, so that a change to it rebuilds.
	src=$(cat "$tools/istiod/main.go" "$tools/istiod/go.mod" | sha256sum | cut -c1-8)
	idir=$cache/istiod-${istio##*-}-$src
	ETA="about 5 minutes on 2 cores the first time, plus the module download"
	build istiod-ca istiod "$idir" "istio.io/istio $istio" "istiod's CA (istio.io/istio $istio)" -ldflags "-s -w"
	link istiod "$idir"
fi

log "done"
