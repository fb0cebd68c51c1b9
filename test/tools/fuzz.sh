#!/usr/bin/env bash
# fuzz.sh runs one Go fuzz target for a duration and fails on a real finding.
#
# Go 1.26's fuzz coordinator can report a bare "context deadline exceeded"
# when -fuzztime ends while a worker is mid-call (golang/go#75804, fixed in
# Go 1.27, not in any 1.26.x). That is not a finding: a finding always
# writes its input under testdata/fuzz/<target>/. So a run that fails with
# exactly that message and writes no new input is reported loudly and
# counted as passed; every other failure fails.
#
# Usage: bash test/tools/fuzz.sh GO PKG TARGET FUZZTIME
set -uo pipefail
go=$1 pkg=$2 fn=$3 fuzztime=$4
corpus="$pkg/testdata/fuzz/$fn"
before=$(ls "$corpus" 2>/dev/null | sort)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$go" test -run '^$' -fuzz "^$fn\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
[[ $rc -eq 0 ]] && exit 0
after=$(ls "$corpus" 2>/dev/null | sort)
if [[ "$before" == "$after" ]] && grep -q "^    context deadline exceeded$" "$out" &&
	[[ $(grep -c -- "^--- FAIL" "$out") -eq 1 ]]; then
	echo "fuzz.sh: $fn: Go's fuzz coordinator reported 'context deadline exceeded' at the end of -fuzztime with no failing input written (golang/go#75804); not a finding"
	exit 0
fi
exit "$rc"
