#!/usr/bin/env bash
# Runs the integration tests (./integration, build tag integration) on one lab
# containerd: integration.sh 2.4|1.6 [go test flags...]. The whole output
# goes to the terminal and to $LAB_STATE/integration/<containerd>.log, and
# every peapod a test started leaves its log under
# $LAB_STATE/integration/<containerd>-peapod/. When a test fails, the last
# lines printed are a digest of the failures (each failed test and what its
# checks said, without its peapods' logs), so that the tail of a CI run
# names what failed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# -ge 1 ] || die "usage: $0 2.4|1.6 [go test flags...]"
target=$1; shift
out=$LAB_STATE/integration
log_file=$out/$target.log
mkdir -p "$out"
rm -rf "$out/$target-peapod" && mkdir -p "$out/$target-peapod"

"$LAB_DIR/containerd.sh" up "$target"
export PEAPOD_TEST_CONTAINERD PEAPOD_TEST_CONTAINERD_BIN PEAPOD_TEST_RUNC=$LAB_BIN/runc
PEAPOD_TEST_CONTAINERD=$("$LAB_DIR/containerd.sh" address "$target")
PEAPOD_TEST_CONTAINERD_BIN=$("$LAB_DIR/containerd.sh" binary "$target")
export PEAPOD_TEST_LOG_DIR=$out/$target-peapod

cd "$REPO_DIR"
status=0
go test -count=1 -timeout 30m -tags integration ./integration/... "$@" 2>&1 | tee "$log_file" || status=$?
[ "$status" = 0 ] && exit 0

# The digest: "--- FAIL" lines, and the lines the tests' checks logged
# (file_test.go:N: ...), but for what every pod test logs on its way and the
# peapod logs a failed test prints (indented deeper, in klog's form); a
# panic (the test binary's timeout is one) and the tests it cut short.
digest() {
	grep -E '^ *--- FAIL|^ +[A-Za-z0-9_]+_test\.go:[0-9]+: |^panic: |^[[:space:]]+Test[^ ]* \([0-9a-z.]+\)$' "$log_file" |
		grep -Ev '_test\.go:[0-9]+: (pulled |pod .* is [0-9a-f]{64}, ran in|cleaning up the pods|peapod .* stderr:$)' |
		cut -c1-300 || true
}
lines=$(digest | wc -l)
echo "== integration tests on containerd $target failed (whole output: $log_file; peapod logs: $PEAPOD_TEST_LOG_DIR); what failed:"
digest | head -n 15
[ "$lines" -le 15 ] || echo "   ... and $((lines - 15)) more lines of failures in $log_file"
exit "$status"
