#!/usr/bin/env bash
# Writes the lab's CNI network: bridge (gateway on the host, no masquerade) +
# host-local IPAM + portmap. Pods get no default route (no IPAM "routes", no
# isDefaultGateway): the connected pod subnet is all they reach, so pod
# traffic cannot leave the machine. portmap's snat makes hostPort work on
# 127.0.0.1. The loopback interface is set up by the runtime itself.
# cniVersion 1.0.0 is the newest the Debian plugins (1.1.1) support.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

: "${LAB_POD_SUBNET:=10.88.0.0/16}"
: "${LAB_CNI_BRIDGE:=peapod0}"
conf=$LAB_CNI_CONF_DIR/10-peapod-lab.conflist

for p in bridge host-local portmap loopback; do
	[ -x "$LAB_CNI_BIN_DIR/$p" ] || die "CNI plugin $LAB_CNI_BIN_DIR/$p missing (run packages.sh)"
done

mkdir -p "$LAB_CNI_CONF_DIR"
cat >"$conf.tmp" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "peapod-lab",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$LAB_CNI_BRIDGE",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$LAB_POD_SUBNET" }]]
      }
    },
    {
      "type": "portmap",
      "capabilities": { "portMappings": true },
      "snat": true
    }
  ]
}
JSON
mv "$conf.tmp" "$conf"
# The runtimes load the first config by name: say so if another one comes first.
first=$(ls "$LAB_CNI_CONF_DIR" | grep -E '\.(conf|conflist|json)$' | sort | head -1)
[ "$first" = "${conf##*/}" ] || log "warning: $LAB_CNI_CONF_DIR/$first sorts before ${conf##*/}"
log "CNI config $conf (subnet $LAB_POD_SUBNET, bridge $LAB_CNI_BRIDGE)"
