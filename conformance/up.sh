#!/usr/bin/env bash
# Starts peapod on this machine, ready for crictl (the README's start command).
# Uses the containerd already serving $CONTAINERD_ADDRESS (default
# /run/containerd/containerd.sock); where none serves, starts the lab's
# containerd 2.4.2. Also sets up what an offline node needs: the local
# registry with mirrors for the usual upstream registries, and a CNI network.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

: "${CONTAINERD_ADDRESS:=/run/containerd/containerd.sock}"

"$LAB_DIR/prepare.sh"

if ctr --address "$CONTAINERD_ADDRESS" version >/dev/null 2>&1; then
	ctrd=$CONTAINERD_ADDRESS
	log "using the containerd serving $ctrd"
else
	"$LAB_DIR/containerd.sh" up 2.4
	ctrd=$("$LAB_DIR/containerd.sh" address 2.4)
fi
"$LAB_DIR/peapod.sh" up main "$ctrd"

ln -sf "$LAB_BIN/crictl" /usr/local/bin/crictl
ln -sf "$LAB_BIN/kubelet" /usr/local/bin/kubelet    # for the README's kubelet walkthrough
if [ ! -e /etc/crictl.yaml ]; then
	cat >/etc/crictl.yaml <<'EOC'
runtime-endpoint: unix:///run/peapod/peapod.sock
image-endpoint: unix:///run/peapod/peapod.sock
timeout: 30
EOC
fi
cat <<EOM

peapod is serving unix:///run/peapod/peapod.sock (containerd: $ctrd).
  crictl version        crictl info        kubelet: see the README's "Using it with the kubelet"
  logs: $LAB_STATE/logs/peapod-main.log      stop: conformance/peapod.sh down main
EOM
