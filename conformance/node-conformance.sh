#!/usr/bin/env bash
# Runs Kubernetes node conformance (e2e_node.test v1.34.4, [NodeConformance]
# without [Serial], [Flaky] or [Slow], as upstream's node conformance jobs
# run it) against peapod on each lab containerd, and against containerd
# 2.4.2's built-in CRI as the reference, in one run.
#
#   node-conformance.sh [--targets "2.4 1.6"] [--no-reference] [--subset ci]
#                       [--focus RE] [--skip RE] [--slow] [--nodes N]
#
# e2e_node.test starts etcd and an API server in process and the kubelet
# found beside it ($LAB_BIN), with its root at /var/lib/kubelet. It uses ports
# 6443, 10248, 10250 and 10255: never run it beside another kubelet.
# --subset ci: the specs listed in node-conformance-ci.txt (what `make test`
#   runs within CI's time); the full set is `make node-conformance`.
# --slow: the [Slow] specs too (one waits 27 minutes for the restart back-off cap).
# --nodes N: ginkgo processes running specs at once (default 4).
#
# peapod's runs are held to node-conformance-expected-failures.txt (a ratchet
# that only shrinks) and node-conformance-cannot-pass.txt (specs this host
# cannot pass, with the reason); the reference's result is reported beside.
# Each run ends with "node-conformance <target>: N passed, N failed, N skipped",
# then specs the reference passes and peapod fails or skips are listed: there
# must be none, or the run fails (compare.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

targets="2.4 1.6" reference=1 focus='\[NodeConformance\]' skip='\[Flaky\]|\[Serial\]|\[Slow\]' nodes=4 subset=
while [ $# -gt 0 ]; do
	case $1 in
	--targets) targets=$2; shift 2 ;;
	--no-reference) reference=0; shift ;;
	--focus) focus=$2; shift 2 ;;
	--skip) skip="$skip|$2"; shift 2 ;;
	--nodes) nodes=$2; shift 2 ;;
	--slow) skip=${skip/'|\[Slow\]'/}; shift ;;
	--subset) subset=$2; shift 2 ;;
	*) die "unknown option $1 (see the header of $0)" ;;
	esac
done
if [ "$subset" = ci ]; then
	# One spec name a line (# comments): matched exactly, as ginkgo regexes.
	focus=$(sed -e 's/[[:space:]]*#.*//' -e '/^$/d' "$LAB_DIR/node-conformance-ci.txt" |
		sed -e 's/[][\\.*^$()+?{}|]/\\&/g' | paste -sd'|')
	[ -n "$focus" ] || die "node-conformance-ci.txt lists no spec"
fi

"$LAB_DIR/prepare.sh"
"$LAB_DIR/build-tools.sh" --node-conformance
for b in e2e_node.test kubelet ginkgo-k8s; do
	[ -x "$LAB_BIN/$b" ] || die "$LAB_BIN/$b missing (build-tools.sh)"
done
busy=$(ss -Htln 2>/dev/null | awk '{print $4}' | grep -E ':(6443|10248|10250|10255)$' || true)
[ -z "$busy" ] || die "ports node conformance needs are in use (another kubelet?): $busy"

# e2e_node starts the kubelet with systemd-run wherever it finds one, which
# fails without systemd as PID 1: give it a PATH without systemd-run.
nosd=$LAB_STATE/node-conformance/bin-nosystemd
if [ ! -d "$nosd" ]; then
	mkdir -p "$nosd.tmp"
	for f in /usr/bin/*; do
		[ "${f##*/}" = systemd-run ] || ln -sf "$f" "$nosd.tmp/${f##*/}"
	done
	mv "$nosd.tmp" "$nosd"
fi
e2e_path="$LAB_BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin:$nosd"

failed=() summaries=()
# e2e_run NAME ENDPOINT HELD CONTAINERD NAMESPACE: one run of the suite,
# summarized. The kubelet's cAdvisor reads the runtime's containers from
# containerd itself (their cgroups, and the labels containerd's CRI gives
# them): it is pointed at the containerd and namespace the runtime uses,
# not at its default /run/containerd/containerd.sock and k8s.io.
e2e_run() {
	local name=$1 ep=$2 held=$3 ctrd=$4 ns=$5 out rc=0 start status=0
	out=$LAB_STATE/node-conformance/$name
	rm -rf "$out" && mkdir -p "$out"
	cleanup_kubelet_root   # what an interrupted run left
	# The kubelet pulls only what the runtime lacks: drop the test images a
	# run before this lab's last image build left, so each run pulls them fresh.
	local ref
	for ref in $(awk '$1 ~ /^registry\.k8s\.io\/e2e-test-images\// {print $1}' "$LAB_CACHE/images/images.txt"); do
		"$LAB_BIN/crictl" --runtime-endpoint "$ep" --image-endpoint "$ep" rmi "$ref" >/dev/null 2>&1 || true
	done
	log "node conformance against $name ($ep), $nodes at once (log $out/e2e.log)"
	start=$(date +%s)
	# The suite writes its kubelet config and static pod dirs in its working dir.
	(cd "$out" && env PATH="$e2e_path" "$LAB_BIN/ginkgo-k8s" --nodes "$nodes" --no-color --timeout 3h \
		--focus "$focus" --skip "$skip" --json-report report.json --output-dir "$out" \
		"$LAB_BIN/e2e_node.test" -- \
		--container-runtime-endpoint "$ep" --prepull-images=false \
		--kubelet-flags="--cgroup-driver=cgroupfs --fail-swap-on=false --containerd=$ctrd --containerd-namespace=$ns" \
		--report-dir "$out/report") >"$out/e2e.log" 2>&1 || rc=$?
	local expected=()
	[ "$held" = reported ] || expected=(--expected "$LAB_DIR/node-conformance-expected-failures.txt")
	"$LAB_DIR/ginkgo-summary.sh" --report "$out/report.json" --out "$out" --suite node-conformance --name "$name" \
		--cannot-pass "$LAB_DIR/node-conformance-cannot-pass.txt" "${expected[@]}" \
		--rc "$rc" --secs "$(($(date +%s) - start))" | tee "$out/summary.txt" || status=$?
	summaries+=("$(tail -n 1 "$out/summary.txt")")
	if [ "$status" != 0 ] && [ "$held" = held ]; then
		failed+=("$name")
	fi
	# The kubelet's root holds the pods' volumes; the next run starts afresh.
	cleanup_kubelet_root
}

# cleanup_kubelet_root unmounts what the suite's kubelet left under its root.
cleanup_kubelet_root() {
	local m
	for m in $(awk '$5 == "/var/lib/kubelet" || index($5, "/var/lib/kubelet/") == 1 {print $5}' /proc/self/mountinfo | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
}

peapod_names=()
for t in $targets; do
	"$LAB_DIR/containerd.sh" up "$t"
	inst=node-$t
	"$LAB_DIR/peapod.sh" up "$inst" "$("$LAB_DIR/containerd.sh" address "$t")"
	"$LAB_DIR/peapod.sh" clean "$inst"
	e2e_run "peapod-containerd-$t" "unix://$("$LAB_DIR/peapod.sh" address "$inst")" held \
		"$("$LAB_DIR/containerd.sh" address "$t")" "$("$LAB_DIR/peapod.sh" namespace "$inst")"
	peapod_names+=("peapod-containerd-$t")
	# The suite leaves pods whose namespaces it deleted without waiting: they
	# would run on beside later suites.
	"$LAB_DIR/peapod.sh" clean "$inst"
	"$LAB_DIR/peapod.sh" down "$inst"
done

ref=containerd-2.4-builtin
if [ "$reference" = 1 ]; then
	"$LAB_DIR/containerd.sh" up 2.4
	e2e_run "$ref" "unix://$("$LAB_DIR/containerd.sh" address 2.4)" reported \
		"$("$LAB_DIR/containerd.sh" address 2.4)" k8s.io
	"$LAB_DIR/containerd.sh" clean 2.4
fi

echo
echo "== node conformance summary"
printf '%s\n' "${summaries[@]}"
if [ "$reference" = 1 ]; then
	"$LAB_DIR/compare.sh" --suite node-conformance --reference "$LAB_STATE/node-conformance/$ref" \
		"${peapod_names[@]/#/$LAB_STATE/node-conformance/}" || failed+=("behind $ref")
fi
if [ ${#failed[@]} -gt 0 ]; then
	die "node conformance runs that did not meet their expectations: ${failed[*]} (see above)"
fi
log "node conformance met its expectations"
