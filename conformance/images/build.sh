#!/usr/bin/env bash
# Builds, offline and reproducibly, every image critest v1.36.0 pulls (plus peapod's pause
# image) from Debian content on this machine, and pushes each under its upstream name into
# the lab registry: registry.k8s.io/pause:3.9 -> 127.0.0.1:5000/registry.k8s.io/pause:3.9.
#
# Images are OCI (manifest + config + tar+gzip layers), linux/amd64, written into one OCI
# layout under $LAB_CACHE/images/oci with plain tools (tar, gzip, sha256sum, jq) and pushed
# with skopeo. Layers are sorted, mtime $SOURCE_DATE_EPOCH (default 0), gzip -n, and the
# config's "created" is fixed, so every build yields the same digests and a re-run pushes
# nothing. Not built: gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2...
# (critest pins upstream's digest, which no local build can reproduce) and the win-* images.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

export LC_ALL=C TZ=UTC    # byte-order sorting and fixed dates: part of reproducibility
umask 022

: "${SOURCE_DATE_EPOCH:=0}"
WORK=$LAB_CACHE/images
OCI=$WORK/oci
STAGE=$WORK/stage
SRC=$WORK/src
MULTIARCH=x86_64-linux-gnu
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
MT_MANIFEST=application/vnd.oci.image.manifest.v1+json
MT_CONFIG=application/vnd.oci.image.config.v1+json
MT_LAYER=application/vnd.oci.image.layer.v1.tar+gzip
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

start=$(date +%s.%N)

# --- host packages ---------------------------------------------------------------------

POLICY_RC_MADE=
cleanup() { if [ -n "$POLICY_RC_MADE" ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

# Install only what is missing, so re-runs never touch apt.
ensure_packages() {
	local pair missing=()
	for pair in /usr/bin/busybox:busybox /usr/bin/toybox:toybox /usr/bin/ipcs:util-linux \
		/usr/sbin/nginx:nginx-light /etc/nginx/mime.types:nginx-common /usr/bin/gcc:gcc \
		/usr/lib/$MULTIARCH/libc.a:libc6-dev /usr/bin/skopeo:skopeo /usr/bin/jq:jq \
		/usr/bin/docker-registry:docker-registry /usr/bin/curl:curl /bin/nc.openbsd:netcat-openbsd; do
		[ -e "${pair%%:*}" ] || missing+=("${pair#*:}")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	# No init system here: keep package scripts from starting nginx or the registry.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		POLICY_RC_MADE=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends "${missing[@]}" ||
		{ apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; }
	cleanup
	POLICY_RC_MADE=
}

# --- OCI layout helpers ----------------------------------------------------------------

# add_blob FILE: move FILE into the layout under its digest; prints "sha256:HEX SIZE".
add_blob() {
	local hex size
	hex=$(sha256sum "$1" | cut -d' ' -f1)
	size=$(stat -c %s "$1")
	mv -f "$1" "$OCI/blobs/sha256/$hex"
	echo "sha256:$hex $size"
}

declare -A L_DIGEST L_SIZE L_DIFFID
# make_layer NAME: tar $STAGE/NAME reproducibly (sorted, fixed mtime, numeric owners as
# staged, GNU format so no atime/ctime), gzip -n it, and record its descriptor.
make_layer() {
	local name=$1 dir=$STAGE/$1 tmp=$WORK/layer.tar entries d s
	[ -z "${L_DIGEST[$name]:-}" ] || return 0
	mapfile -t entries < <(cd "$dir" && ls -A)
	tar -C "$dir" --create --file "$tmp" --format=gnu --sort=name --numeric-owner \
		--mtime="@$SOURCE_DATE_EPOCH" -- "${entries[@]}"
	L_DIFFID[$name]=sha256:$(sha256sum "$tmp" | cut -d' ' -f1)
	gzip -n -c "$tmp" >"$tmp.gz"
	rm -f "$tmp"
	d=$(add_blob "$tmp.gz")
	read -r d s <<<"$d"
	L_DIGEST[$name]=$d L_SIZE[$name]=$s
}

declare -A M_DIGEST M_SIZE C_DIGEST REF_KEY
# image KEY "LAYER..." CONFIG_JSON: write config and manifest blobs for image KEY.
# Descriptors are plain printf (digests and sizes need no quoting); one jq for the config.
image() {
	local key=$1 layers=$2 cfg=$3 l diffids= descs= hist= d s
	for l in $layers; do
		make_layer "$l"
		diffids+=${diffids:+,}\"${L_DIFFID[$l]}\"
		descs+=${descs:+,}$(printf '{"mediaType":"%s","digest":"%s","size":%s}' $MT_LAYER "${L_DIGEST[$l]}" "${L_SIZE[$l]}")
		hist+=${hist:+,}$(printf '{"created":"%s","created_by":"peapod-lab conformance/images/build.sh: layer %s"}' "$CREATED" "$l")
	done
	jq -cjn --arg created "$CREATED" --arg path "$PATH_ENV" --argjson cfg "$cfg" \
		--argjson diff "[$diffids]" --argjson hist "[$hist]" \
		'{created: $created, architecture: "amd64", os: "linux",
		  config: ({Env: [$path], WorkingDir: "/"} + $cfg),
		  rootfs: {type: "layers", diff_ids: $diff}, history: $hist}' >"$WORK/config.json"
	d=$(add_blob "$WORK/config.json")
	read -r d s <<<"$d"
	C_DIGEST[$key]=$d
	printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"%s","digest":"%s","size":%s},"layers":[%s]}' \
		$MT_MANIFEST $MT_CONFIG "$d" "$s" "$descs" >"$WORK/manifest.json"
	d=$(add_blob "$WORK/manifest.json")
	read -r d s <<<"$d"
	M_DIGEST[$key]=$d M_SIZE[$key]=$s
}

# tag KEY REF...: push image KEY under each upstream REF (always name:tag).
tag() {
	local key=$1 ref
	shift
	for ref in "$@"; do REF_KEY[$ref]=$key; done
}

write_index() {
	local key
	printf '{"imageLayoutVersion":"1.0.0"}' >"$OCI/oci-layout"
	for key in $(printf '%s\n' "${!M_DIGEST[@]}" | sort); do
		jq -cn --arg mt $MT_MANIFEST --arg d "${M_DIGEST[$key]}" --argjson s "${M_SIZE[$key]}" --arg k "$key" \
			'{mediaType: $mt, digest: $d, size: $s, annotations: {"org.opencontainers.image.ref.name": $k}}'
	done | jq -cs '{schemaVersion: 2, manifests: .}' >"$OCI/index.json"
}

# --- staging helpers -------------------------------------------------------------------

# copy_libs ROOT SKIPROOT BINARY...: copy the shared libraries BINARY needs (ldd) into
# ROOT/lib/$MULTIARCH, except those SKIPROOT (a lower layer) already has.
copy_libs() {
	local root=$1 skip=$2 lib t
	shift 2
	mkdir -p "$root/lib/$MULTIARCH"
	for lib in $(ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/lib64\// {print $1}' | sort -u); do
		t=lib/$MULTIARCH/${lib##*/}
		if [ -n "$skip" ] && [ -e "$skip/$t" ]; then continue; fi
		cp -L "$lib" "$root/$t"
	done
}

PASSWD='root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false'
GROUP='root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:'

# Base: Debian's dynamic busybox (not busybox-static, whose shell runs applets in-process,
# so `sh -c ls` would never exec /bin/ls as the MaskedPaths spec needs) with every applet
# as a hard link in /bin only (PATH puts /usr/bin first: a second `ls` there would dodge a
# mask on /bin/ls), toybox's pgrep/pkill, util-linux's ipcs, their glibc libraries, and
# busybox-style users (root, www-data 33, nobody 65534).
stage_base() {
	local r=$STAGE/base a
	mkdir -p "$r"/{bin,sbin,dev,etc,home,proc,root,sys,tmp,lib64,usr/bin,usr/sbin,usr/local/bin} \
		"$r"/var/{log,run,spool/mail,www}
	chmod 1777 "$r/tmp"
	chmod 700 "$r/root"
	cp /usr/bin/busybox "$r/bin/busybox"
	for a in $(/usr/bin/busybox --list); do ln "$r/bin/busybox" "$r/bin/$a"; done
	cp /usr/bin/toybox "$r/bin/toybox"
	ln "$r/bin/toybox" "$r/bin/pgrep"
	ln "$r/bin/toybox" "$r/bin/pkill"
	cp /usr/bin/ipcs "$r/bin/ipcs"
	copy_libs "$r" "" /usr/bin/busybox /usr/bin/toybox /usr/bin/ipcs
	ln -s /lib/$MULTIARCH/ld-linux-x86-64.so.2 "$r/lib64/ld-linux-x86-64.so.2"
	printf '%s\n' "$PASSWD" >"$r/etc/passwd"
	printf '%s\n' "$GROUP" >"$r/etc/group"
	printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nservices: files\nprotocols: files\n' \
		>"$r/etc/nsswitch.conf"
	chown -R 0:0 "$r"
}

# stage_file LAYER PATH MODE: write stdin to $STAGE/LAYER/PATH (parents root-owned 0755).
stage_file() {
	local f=$STAGE/$1/$2
	mkdir -p "$(dirname "$f")"
	cat >"$f"
	chmod "$3" "$f"
}

# A layer holding one empty marker file, to make otherwise identical images distinct.
stage_marker() {
	stage_file "$1" "$2" 644 </dev/null
	chown -R 0:0 "$STAGE/$1"
}

# Static C programs: pause (sandbox) and nnp (NoNewPrivs spec). -s and fixed paths keep
# the output byte-identical between builds.
build_c() {
	local name=$1
	mkdir -p "$SRC"
	cat >"$SRC/$name.c"
	(cd "$SRC" && gcc -static -Os -s -o "$name" "$name.c")
}

stage_pause() {
	build_c pause <<'EOF'
/* pause: PID 1 of a pod sandbox. Sleeps forever, reaps zombies, exits 0 on SIGINT/SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void sigdown(int signo) { psignal(signo, "Shutting down, got signal"); exit(0); }
static void sigreap(int signo) { (void)signo; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "-v") == 0) { printf("pause (peapod-lab)\n"); return 0; }
	if (getpid() != 1) fprintf(stderr, "Warning: pause should be the first process\n");
	struct sigaction down = {.sa_handler = sigdown}, reap = {.sa_handler = sigreap, .sa_flags = SA_NOCLDSTOP};
	if (sigaction(SIGINT, &down, NULL) < 0 || sigaction(SIGTERM, &down, NULL) < 0 ||
	    sigaction(SIGCHLD, &reap, NULL) < 0) return 1;
	for (;;) pause();
	return 42;
}
EOF
	mkdir -p "$STAGE/pause"
	install -m 755 "$SRC/pause" "$STAGE/pause/pause"
	chown -R 0:0 "$STAGE/pause"
}

stage_nonewprivs() {
	build_c nnp <<'EOF'
/* nnp: installed setuid root; prints the effective uid it ends up with. */
#include <stdio.h>
#include <unistd.h>
int main(void) { printf("Effective uid: %d\n", (int)geteuid()); return 0; }
EOF
	mkdir -p "$STAGE/nonewprivs/usr/local/bin"
	install -m 4755 "$SRC/nnp" "$STAGE/nonewprivs/usr/local/bin/nnp"
	chown -R 0:0 "$STAGE/nonewprivs"
	chmod 4755 "$STAGE/nonewprivs/usr/local/bin/nnp" # chown clears the setuid bit
}

# nginx: Debian's nginx with its extra libraries and a minimal config. The image's CMD is
# `nginx -g "daemon off;"` (as upstream), so the master stays PID 1 and writes
# /var/run/nginx.pid; logs go to the container's stdout/stderr.
stage_nginx() {
	local r=$STAGE/nginx
	mkdir -p "$r"/usr/sbin "$r"/etc/nginx/conf.d "$r"/var/lib/nginx "$r"/var/log/nginx
	cp /usr/sbin/nginx "$r/usr/sbin/nginx"
	copy_libs "$r" "$STAGE/base" /usr/sbin/nginx
	cp /etc/nginx/mime.types "$r/etc/nginx/mime.types"
	stage_file nginx etc/nginx/nginx.conf 644 <<'EOF'
user www-data;
worker_processes 1;
error_log /dev/stderr notice;
pid /var/run/nginx.pid;

events {
    worker_connections 1024;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    keepalive_timeout 65;
    include /etc/nginx/conf.d/*.conf;
}
EOF
	nginx_server 80 | stage_file nginx etc/nginx/conf.d/default.conf 644
	stage_file nginx usr/share/nginx/html/index.html 644 <<'EOF'
<!DOCTYPE html>
<html>
<head><title>Welcome to nginx!</title></head>
<body><h1>Welcome to nginx!</h1><p>peapod conformance lab (Debian nginx).</p></body>
</html>
EOF
	stage_file nginx usr/share/nginx/html/50x.html 644 <<'EOF'
<!DOCTYPE html>
<html><head><title>Error</title></head><body><h1>An error occurred.</h1></body></html>
EOF
	chown -R 0:0 "$r"
	# hostnet-nginx, as upstream: the nginx image with only default.conf replaced (:12003).
	nginx_server 12003 | stage_file hostnet etc/nginx/conf.d/default.conf 644
	chown -R 0:0 "$STAGE/hostnet"
}

nginx_server() {
	cat <<EOF
server {
    listen       $1;
    server_name  localhost;
    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }
    error_page   500 502 503 504  /50x.html;
    location = /50x.html {
        root   /usr/share/nginx/html;
    }
}
EOF
}

# httpd: busybox httpd serving a page on :80. The multi-container spec only needs HTTP 200
# and the word "httpd" in the container log, which the start-up line provides. A shell
# stays PID 1 with a TERM trap: busybox httpd sets no SIGTERM handler, and a PID-namespace
# init without one ignores SIGTERM.
stage_httpd() {
	stage_file httpd usr/local/bin/httpd-foreground 755 <<'EOF'
#!/bin/sh
# Stand-in for Apache httpd 2.4.39 (peapod conformance lab): busybox httpd on :80.
docroot=/usr/local/apache2/htdocs
echo "httpd-foreground: starting busybox httpd on :80, serving $docroot" >&2
httpd -f -v -p 80 -h "$docroot" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT
wait "$pid"
EOF
	stage_file httpd usr/local/apache2/htdocs/index.html 644 <<'EOF'
<html><body><h1>It works!</h1></body></html>
EOF
	chown -R 0:0 "$STAGE/httpd"
}

# predefined-group, as upstream's `adduser -u 1000 -D default-user; addgroup -g 50000
# group-defined-in-image; addgroup default-user group-defined-in-image`.
stage_predefined_group() {
	local r=$STAGE/predefined-group
	printf '%s\ndefault-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n' "$PASSWD" |
		stage_file predefined-group etc/passwd 644
	printf '%s\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n' "$GROUP" |
		stage_file predefined-group etc/group 644
	mkdir -p "$r/home/default-user"
	chown -R 0:0 "$r"
	chown 1000:1000 "$r/home/default-user"
}

# e2e-base: node conformance's busybox, as upstream's busybox:1.37.0-1 image is: BusyBox
# 1.37.0 (build-tools.sh builds it from Debian's source archive) with every applet a hard
# link in /bin, its glibc libraries, and busybox-style users. Debian's BusyBox 1.35 of
# the base layer lacks nmeter and its sh drops environment variables whose names are not
# identifiers, both of which node conformance's specs rely on.
stage_e2e_base() {
	local r=$STAGE/e2e-base a bb=$LAB_BIN/busybox-1.37.0
	[ -x "$bb" ] || die "$bb missing (run build-tools.sh)"
	mkdir -p "$r"/{bin,sbin,dev,etc,home,proc,root,sys,tmp,lib64,usr/bin,usr/sbin} "$r"/var/{log,run,www}
	chmod 1777 "$r/tmp"
	chmod 700 "$r/root"
	cp "$bb" "$r/bin/busybox"
	for a in $("$bb" --list); do [ "$a" = busybox ] || ln "$r/bin/busybox" "$r/bin/$a"; done
	copy_libs "$r" "" "$bb"
	ln -s /lib/$MULTIARCH/ld-linux-x86-64.so.2 "$r/lib64/ld-linux-x86-64.so.2"
	printf '%s\n' "$PASSWD" >"$r/etc/passwd"
	printf '%s\n' "$GROUP" >"$r/etc/group"
	printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$r/etc/nsswitch.conf"
	chown -R 0:0 "$r"
}

# agnhost, as upstream's image: the agnhost program (built from k8s.io/kubernetes by
# build-tools.sh) at /agnhost and /agnhost-2, curl, OpenBSD's nc and bash (the e2e
# framework's commands), porter's test certificate, /uploads, and the image's user 1000 in group
# 50000. Upstream's alpine becomes the busybox base (its nc, ip and wget).
stage_agnhost() {
	local r=$STAGE/agnhost porter
	porter=$(go env GOMODCACHE)/k8s.io/kubernetes@v1.34.4/test/images/agnhost/porter
	[ -x "$LAB_BIN/agnhost" ] || die "$LAB_BIN/agnhost missing (run build-tools.sh)"
	mkdir -p "$r/uploads" "$r/bin" "$r/usr/bin" "$r/home/user-defined-in-image"
	install -m 755 "$LAB_BIN/agnhost" "$r/agnhost"
	ln -s agnhost "$r/agnhost-2"
	install -m 644 "$porter/localhost.crt" "$porter/localhost.key" "$r/"
	cp /usr/bin/curl "$r/usr/bin/curl"
	cp /bin/nc.openbsd "$r/usr/bin/nc" # ahead of busybox's nc, which has no UDP (-u)
	cp /bin/bash "$r/bin/bash"
	copy_libs "$r" "$STAGE/e2e-base" /usr/bin/curl /bin/nc.openbsd /bin/bash
	printf '%s\nuser-defined-in-image:x:1000:1000:Linux User,,,:/home/user-defined-in-image:/bin/sh\n' "$PASSWD" |
		stage_file agnhost etc/passwd 644
	printf '%s\nuser-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n' "$GROUP" |
		stage_file agnhost etc/group 644
	chown -R 0:0 "$r"
	chown 1000:1000 "$r/home/user-defined-in-image"
}

# --- build -----------------------------------------------------------------------------

mkdir -p "$WORK"
exec 9>"$WORK/.lock"
flock -n 9 || die "another build.sh is running ($WORK/.lock)"

ensure_packages
"$LAB_DIR/registry.sh" up 9>&-    # the registry must not inherit our lock

rm -rf "$OCI" "$STAGE"
mkdir -p "$OCI/blobs/sha256" "$STAGE"

stage_base
stage_pause
stage_nonewprivs
stage_nginx
stage_httpd
stage_predefined_group
stage_e2e_base
stage_agnhost
for m in test-image-latest test all test-image-1 test-image-2 test-image-3 same-image; do
	stage_marker "marker-$m" "$m"    # upstream image-test: `ADD $TEST $TEST` at /
done
for m in nginx httpd; do
	stage_marker "marker-e2e-$m" "e2e-$m"
done
for v in 1.35.0-glibc 1-glibc 1-uclibc 1-musl; do
	stage_marker "bench-$v" "busybox-variant-$v"
done

sh='{"Cmd": ["sh"]}'
K=gcr.io/k8s-staging-cri-tools
E2E=registry.k8s.io/e2e-test-images
ECR=public.ecr.aws/docker/library

# Default test image; docker.io/library/busybox is the same image, for hand use (`crictl pull busybox`).
image busybox base "$sh"
tag busybox $E2E/busybox:1.29-2 docker.io/library/busybox:latest

image nginx "base nginx" \
	'{"Cmd": ["nginx", "-g", "daemon off;"], "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGTERM"}'
tag nginx $E2E/nginx:1.14-2

image hostnet-nginx "base nginx hostnet" \
	'{"Cmd": ["nginx", "-g", "daemon off;"], "ExposedPorts": {"12003/tcp": {}}, "StopSignal": "SIGQUIT"}'
tag hostnet-nginx $K/hostnet-nginx-amd64:latest

image httpd "base httpd" \
	'{"Cmd": ["httpd-foreground"], "ExposedPorts": {"80/tcp": {}}, "WorkingDir": "/usr/local/apache2"}'
tag httpd $E2E/httpd:2.4.39-4

image nonewprivs "base nonewprivs" '{"Entrypoint": ["/usr/local/bin/nnp"]}'
tag nonewprivs $E2E/nonewprivs:1.3

# Pause: 3.9 is one image under both registries (same image ID, as the spec requires).
# 3.10, peapod's sandbox image, is kept a distinct image: the "same image from different
# registries" spec removes pause:3.9 by image ID, which must not untag the sandbox image.
image pause-3.9 pause '{"Entrypoint": ["/pause"], "User": "65535:65535", "Labels": {"org.opencontainers.image.version": "3.9"}}'
tag pause-3.9 registry.k8s.io/pause:3.9 k8s.gcr.io/pause:3.9
image pause-3.10 pause '{"Entrypoint": ["/pause"], "User": "65535:65535", "Labels": {"org.opencontainers.image.version": "3.10"}}'
tag pause-3.10 registry.k8s.io/pause:3.10

# Image-user specs read only the config's User.
image user-uid base '{"Cmd": ["sh"], "User": "1002"}'
tag user-uid $K/test-image-user-uid:latest
image user-username base '{"Cmd": ["sh"], "User": "www-data"}'
tag user-username $K/test-image-user-username:latest
image user-uid-group base '{"Cmd": ["sh"], "User": "1003:1004"}'
tag user-uid-group $K/test-image-user-uid-group:latest
image user-username-group base '{"Cmd": ["sh"], "User": "www-data:1004"}'
tag user-username-group $K/test-image-user-username-group:latest

image predefined-group "base predefined-group" '{"Cmd": ["sh"], "User": "1000"}'
tag predefined-group $K/test-image-predefined-group:latest

# Pull/list specs: distinct images where upstream's are distinct, one image for test-image-tags.
image test-image-latest "base marker-test-image-latest" "$sh"
tag test-image-latest $K/test-image-latest:latest
image test-image-tag-test "base marker-test" "$sh"
tag test-image-tag-test $K/test-image-tag:test
image test-image-tag-all "base marker-all" "$sh"
tag test-image-tag-all $K/test-image-tag:all
for n in 1 2 3; do
	image test-image-$n "base marker-test-image-$n" "$sh"
	tag test-image-$n $K/test-image-$n:latest
done
image test-image-tags "base marker-same-image" "$sh"
tag test-image-tags $K/test-image-tags:1 $K/test-image-tags:2 $K/test-image-tags:3

# Benchmark image-listing set (as upstream, busybox:1 is the same image as :1-glibc).
image bench-1.35.0-glibc "base bench-1.35.0-glibc" "$sh"
tag bench-1.35.0-glibc $ECR/busybox:1.35.0-glibc
image bench-1-glibc "base bench-1-glibc" "$sh"
tag bench-1-glibc $ECR/busybox:1 $ECR/busybox:1-glibc
image bench-1-uclibc "base bench-1-uclibc" "$sh"
tag bench-1-uclibc $ECR/busybox:1-uclibc
image bench-1-musl "base bench-1-musl" "$sh"
tag bench-1-musl $ECR/busybox:1-musl

# Kubernetes node conformance (e2e_node, v1.34.4: test/utils/image/manifest.go).
image busybox-1.37 e2e-base "$sh"
tag busybox-1.37 $E2E/busybox:1.37.0-1
image agnhost "e2e-base agnhost" '{"Entrypoint": ["/agnhost"], "Cmd": ["pause"], "ExposedPorts": {"80/tcp": {}, "8080/tcp": {}, "8081/tcp": {}, "9376/tcp": {}, "5000/tcp": {}}}'
tag agnhost $E2E/agnhost:2.56
image nonroot e2e-base '{"Cmd": ["sh"], "User": "1234"}'
tag nonroot $E2E/nonroot:1.4
# Distinct images where upstream's are: specs that change a container's image
# check the image its status reports, which one image with several tags blurs.
image nginx-1.14-4 "base nginx marker-e2e-nginx" \
	'{"Cmd": ["nginx", "-g", "daemon off;"], "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGTERM"}'
tag nginx-1.14-4 $E2E/nginx:1.14-4
image httpd-2.4.38 "base httpd marker-e2e-httpd" \
	'{"Cmd": ["httpd-foreground"], "ExposedPorts": {"80/tcp": {}}, "WorkingDir": "/usr/local/apache2"}'
tag httpd-2.4.38 $E2E/httpd:2.4.38-4
image pause-3.10.1 pause '{"Entrypoint": ["/pause"], "User": "65535:65535", "Labels": {"org.opencontainers.image.version": "3.10.1"}}'
tag pause-3.10.1 registry.k8s.io/pause:3.10.1

# Not built: $K/test-image-digest@sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf
# is pinned to upstream's digest, which no local build can reproduce; its spec fails offline.

write_index
built=$(date +%s.%N)

# --- push ------------------------------------------------------------------------------

# registry_digest REPO TAG: the manifest digest the registry holds for REPO:TAG, or "".
registry_digest() {
	curl -fsS -I --max-time 10 -H "Accept: $MT_MANIFEST" "http://$LAB_REGISTRY/v2/$1/manifests/$2" 2>/dev/null |
		tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}' || true
}

pushed=0 present=0
list=$WORK/images.txt
: >"$list.tmp"
for ref in $(printf '%s\n' "${!REF_KEY[@]}" | sort); do
	key=${REF_KEY[$ref]} repo=${ref%:*} tg=${ref##*:}
	want=${M_DIGEST[$key]}
	if [ "$(registry_digest "$repo" "$tg")" = "$want" ]; then
		present=$((present + 1))
	else
		log "pushing $LAB_REGISTRY/$ref"
		# Unsigned local images: bypass the host's signature policy. --preserve-digests
		# makes skopeo fail rather than rewrite the manifest.
		skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false \
			"oci:$OCI:$key" "docker://$LAB_REGISTRY/$ref"
		got=$(registry_digest "$repo" "$tg")
		[ "$got" = "$want" ] || die "$ref: registry has ${got:-nothing}, built $want"
		pushed=$((pushed + 1))
	fi
	printf '%s %s %s\n' "$ref" "$want" "${C_DIGEST[$key]}" >>"$list.tmp"
done
mv "$list.tmp" "$list"

end=$(date +%s.%N)
printf 'images: %d refs (%d distinct images) in %s: %d pushed, %d already present; build %.1fs, push %.1fs (list: %s)\n' \
	"${#REF_KEY[@]}" "${#M_DIGEST[@]}" "$LAB_REGISTRY" "$pushed" "$present" \
	"$(awk "BEGIN {print $built - $start}")" "$(awk "BEGIN {print $end - $built}")" "$list"
