#!/usr/bin/env bash
# demo-status.sh: the 'meshca status' demo of the README, reproducibly.
# It creates a CA with the embedded defaults in a temporary directory,
# starts 'meshca serve' on loopback ephemeral ports, signs one workload
# certificate, rotates the intermediate once ('meshca rotate intermediate'),
# starts a root rotation to a second development root ('meshca rotate
# root'), prints 'meshca status' (plain: the README shows text) while the
# rotation waits for the workloads, and stops the server it started. MESHCA is the binary (default: bin/meshca,
# built by 'make build'); extra arguments go to 'meshca status' (e.g. -o json).
set -euo pipefail

MESHCA=${MESHCA:-bin/meshca}
dir=$(mktemp -d "${TMPDIR:-/tmp}/meshca-demo-status.XXXXXX")
pid=""
cleanup() {
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

ca="$dir/ca"
"$MESHCA" init --dir "$ca" >/dev/null
"$MESHCA" serve --dir "$ca" --listen 127.0.0.1:0 --ops-listen 127.0.0.1:0 2>"$dir/serve.log" &
pid=$!

# Ready once status answers through the admin socket.
for _ in $(seq 1 100); do
	if "$MESHCA" status --dir "$ca" --color=never 2>/dev/null | grep -q '^server: *running'; then
		break
	fi
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "meshca serve exited:" >&2
		cat "$dir/serve.log" >&2
		exit 1
	fi
	sleep 0.2
done

# One workload certificate, as a workload would get it.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/app.key" \
	-subj "/O=" -addext "subjectAltName=URI:spiffe://cluster.local/ns/default/sa/app" -out "$dir/app.csr" 2>/dev/null
"$MESHCA" sign --dir "$ca" --csr "$dir/app.csr" --identity spiffe://cluster.local/ns/default/sa/app --ttl 24h >/dev/null

# Rotate the intermediate now; then begin a root rotation to root B (a
# second development root): phase 1 publishes A+B, phase 2 waits for the
# workload certificate issued under A alone.
"$MESHCA" rotate intermediate --dir "$ca" >/dev/null
"$MESHCA" init --dir "$dir/b" >/dev/null
"$MESHCA" rotate root --dir "$ca" --new-root-cert "$dir/b/root-cert.pem" --new-root-key "$dir/b/root-key.pem" \
	--new-root-pq-key "$dir/b/root-pq-key.pem" >/dev/null
for _ in $(seq 1 100); do
	if "$MESHCA" rotate status --dir "$ca" -o json 2>/dev/null | grep -q '"phase":"wait-for-workloads"'; then
		break
	fi
	sleep 0.2
done

echo "\$ meshca status --dir ./.meshca"
"$MESHCA" status --dir "$ca" --color=never "$@" | sed "s|$ca|./.meshca|g"
