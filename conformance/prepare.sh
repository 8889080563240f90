#!/usr/bin/env bash
# Prepares this machine for the lab, idempotently: Debian packages, the pinned
# tools, the local registry with every critest image, registry mirrors and the
# CNI network. Re-runs take seconds once everything is in place.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

"$LAB_DIR/packages.sh"
"$LAB_DIR/build-tools.sh"
"$LAB_DIR/registry.sh" up
"$LAB_DIR/images/build.sh"
"$LAB_DIR/mirrors.sh"
"$LAB_DIR/cni.sh"
make -s -C "$REPO_DIR" build
log "lab prepared"
