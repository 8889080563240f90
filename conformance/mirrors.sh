#!/usr/bin/env bash
# Points every upstream registry critest uses at the local registry:
# $LAB_CERTS_D/<host>/hosts.toml (containerd's hosts.toml, config_path layout)
# maps <host>/<path> to http://$LAB_REGISTRY/v2/<host>/<path>, where
# images/build.sh pushed them. docker.io needs nothing special: containerd
# normalizes "busybox" to docker.io/library/busybox and keeps the path.
# Also adds an /etc/hosts block mapping the upstream names to 127.0.0.1, so a
# fallback to a real registry cannot leave the machine (not even as DNS).
#   mirrors.sh          write both
#   mirrors.sh remove   remove the /etc/hosts block (mirror files stay)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# Hosts named in cri-tools v1.36.0 pkg/{validate,benchmark,framework} plus docker.io.
LAB_MIRROR_HOSTS=(registry.k8s.io k8s.gcr.io gcr.io docker.io public.ecr.aws)
# Extra names only for the /etc/hosts guard (docker.io's default endpoint).
# invalid.registry.k8s.io is node conformance's image that must fail to pull.
guard_names=("${LAB_MIRROR_HOSTS[@]}" registry-1.docker.io index.docker.io invalid.registry.k8s.io)

begin='# >>> peapod-lab registry guard >>>'
end='# <<< peapod-lab registry guard <<<'

# /etc/hosts may be a bind mount: rewrite it in place, never rename over it.
strip_guard() { sed "/^$begin\$/,/^$end\$/d" /etc/hosts; }

if [ "${1:-}" = remove ]; then
	new=$(strip_guard); printf '%s\n' "$new" >/etc/hosts
	exit 0
fi

for h in "${LAB_MIRROR_HOSTS[@]}"; do
	url="http://$LAB_REGISTRY/v2/$h"
	mkdir -p "$LAB_CERTS_D/$h"
	# The [host] table is required: a file without one is rejected by
	# containerd's parser, which then falls back to the real upstream.
	cat >"$LAB_CERTS_D/$h/hosts.toml.tmp" <<-TOML
	# written by peapod conformance/mirrors.sh: $h -> local registry
	server = "$url"
	override_path = true

	[host."$url"]
	  capabilities = ["pull", "resolve"]
	  override_path = true
	TOML
	mv "$LAB_CERTS_D/$h/hosts.toml.tmp" "$LAB_CERTS_D/$h/hosts.toml"
done

new=$(strip_guard
	echo "$begin"
	for n in "${guard_names[@]}"; do echo "127.0.0.1 $n"; done
	echo "$end")
[ "$new" = "$(cat /etc/hosts)" ] || printf '%s\n' "$new" >/etc/hosts
log "mirrors in $LAB_CERTS_D for ${LAB_MIRROR_HOSTS[*]}"
