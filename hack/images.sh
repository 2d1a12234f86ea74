#!/usr/bin/env bash
# Build the runnerq container images with podman, offline: no registry, no package index inside
# the build.
#
#   worker    docker/Dockerfile.worker    `runnerq worker` (the base of users' worker images) and
#                                         `runnerq console` (the chart's console Deployment)
#   operator  docker/Dockerfile.operator  `python -m runnerq_operator`
#
# How (docs/kubernetes.md, "Images"):
#   1. podman, runc and debootstrap from Debian's packages (installed when missing).
#   2. A base image with Python made by debootstrap from this machine's Debian mirror, cached as a
#      tarball outside the repository and imported into podman's storage once. (BASE_IMAGE=pinned
#      uses the Dockerfiles' pinned python:*-slim base instead, for machines that can pull it.)
#   3. A wheelhouse (the build context, in the cache): runnerq's wheel built here, and its
#      dependencies' wheels made by the base image's own pip (with the host's network), cached
#      outside the repository, keyed by what runnerq requires. The Dockerfiles install from it with
#      `pip --no-index`. (`hack/images.sh wheels` then `docker build -f docker/Dockerfile.worker
#      ~/.cache/runnerq-images/context` works too.)
#   4. `podman build` of both images (layers cached by podman: unchanged dependencies are not
#      installed again).
#
# Usage:
#   hack/images.sh build      everything below, then both images (idempotent; warm: seconds)
#   hack/images.sh deps       install podman, runc and debootstrap when missing
#   hack/images.sh check      exit 0 if podman can run a container here, else 3 with the reason
#   hack/images.sh base       the debootstrap base image
#   hack/images.sh wheels     the wheelhouse (build context) only
#   hack/images.sh env        print the settings as NAME=value lines
#
# Settings (environment):
#   RUNNERQ_IMAGES_CACHE  cache directory            (default ~/.cache/runnerq-images)
#   BASE_IMAGE            base image; unset: the debootstrap one; "pinned": the Dockerfiles' default
#   IMAGE_PREFIX          image name prefix          (default localhost/runnerq/)
#   IMAGE_TAG             image tag                  (default the version in pyproject.toml)
#   DEBIAN_SUITE          debootstrap suite          (default bookworm: Python 3.11)
#   DEBIAN_MIRROR         debootstrap mirror         (default the first apt source for the suite)
#   PYTHON                builds runnerq's wheel     (default .venv/bin/python, else python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${RUNNERQ_IMAGES_CACHE:-$HOME/.cache/runnerq-images}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
LOCAL_BASE="localhost/runnerq-base:$DEBIAN_SUITE"
IMAGE_PREFIX="${IMAGE_PREFIX:-localhost/runnerq/}"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -n1)"
IMAGE_TAG="${IMAGE_TAG:-$VERSION}"
WORKER_IMAGE="${IMAGE_PREFIX}worker:$IMAGE_TAG"
OPERATOR_IMAGE="${IMAGE_PREFIX}operator:$IMAGE_TAG"
CONTEXT="$CACHE/context"
# runnerq's extras in each image (part of the wheelhouse's cache key).
WORKER_EXTRAS=prometheus,hiredis,console
OPERATOR_EXTRAS=operator
export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/docker/containers.conf}"
PODMAN=(podman --runtime runc)

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

log() { printf '[images %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# timed NAME CMD... -> run CMD, then log how long it took.
timed() {
    local name="$1" start=$SECONDS rc=0
    shift
    "$@" || rc=$?
    log "$name took $((SECONDS - start))s"
    return "$rc"
}

as_root() {
    if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi
}

cmd_deps() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || [[ -x /usr/sbin/runc ]] || missing+=(runc)
    command -v debootstrap >/dev/null || [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
    if ((${#missing[@]})); then
        log "installing ${missing[*]} (Debian packages)"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# The mirror of the first apt source that serves DEBIAN_SUITE itself (not -updates/-security).
debian_mirror() {
    if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    local uri
    # deb822 stanzas (*.sources): a URIs line and a Suites line naming the suite.
    uri="$(awk -v suite="$DEBIAN_SUITE" '
        BEGIN { RS = ""; FS = "\n" }
        {
            uris = ""; ok = 0
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^URIs:/) { split($i, u, /[ \t]+/); uris = u[2] }
                if ($i ~ /^Suites:/) { n = split($i, s, /[ \t]+/); for (j = 2; j <= n; j++) if (s[j] == suite) ok = 1 }
            }
            if (ok && uris != "") { print uris; exit }
        }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
    if [[ -z "$uri" && -r /etc/apt/sources.list ]]; then
        # One-line style: deb [options] URI SUITE COMPONENTS...
        uri="$(awk -v suite="$DEBIAN_SUITE" '$1 == "deb" {
            i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if ($(i + 1) == suite) { print $i; exit } }' /etc/apt/sources.list)"
    fi
    [[ -n "$uri" ]] || die "no apt source for suite $DEBIAN_SUITE: set DEBIAN_MIRROR"
    echo "$uri"
}

image_exists() { "${PODMAN[@]}" image exists "$1"; }

# A root filesystem with Python, made by debootstrap (about 40 s) and kept as a tarball.
cmd_base() {
    cmd_deps
    if image_exists "$LOCAL_BASE"; then return; fi
    local tarball="$CACHE/base/$DEBIAN_SUITE-rootfs.tar"
    if [[ ! -s "$tarball" ]]; then
        local mirror rootfs
        mirror="$(debian_mirror)"
        mkdir -p "$CACHE/base"
        rootfs="$(mktemp -d "$CACHE/base/rootfs.XXXXXX")"
        log "debootstrap $DEBIAN_SUITE (minbase + python3) from the apt mirror"
        timed debootstrap as_root debootstrap --variant=minbase \
            --include=python3,python3-venv,ca-certificates "$DEBIAN_SUITE" "$rootfs" "$mirror" \
            >"$CACHE/base/debootstrap.log" 2>&1 ||
            die "debootstrap failed: see $CACHE/base/debootstrap.log"
        # Nothing an image needs at run time: package lists and caches, docs, man pages.
        as_root rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* \
            "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
            "$rootfs"/var/log/*
        as_root tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
        as_root rm -rf "$rootfs"
        mv -f "$tarball.tmp" "$tarball"
    fi
    log "importing $tarball as $LOCAL_BASE"
    "${PODMAN[@]}" import -q --change 'CMD ["python3"]' "$tarball" "$LOCAL_BASE" >/dev/null
}

# 0 when podman can run a container here; 3 (with the reason on stderr) when it cannot.
cmd_check() {
    local out
    if ! out="$(cmd_deps 2>&1)"; then
        log "podman is not installed and could not be: $out"
        exit 3
    fi
    if ! out="$("${PODMAN[@]}" info 2>&1)"; then
        log "podman does not work here: $(tail -n 3 <<<"$out")"
        exit 3
    fi
    if ! out="$(cmd_base 2>&1)"; then
        log "no base image: $out"
        exit 1
    fi
    if ! out="$("${PODMAN[@]}" run --rm --network host "$LOCAL_BASE" python3 -c 'print("ok")' 2>&1)" ||
        [[ "$out" != ok ]]; then
        log "podman cannot run a container here: $(tail -n 3 <<<"$out")"
        exit 3
    fi
}

base_image() {
    case "${BASE_IMAGE:-}" in
        "") echo "$LOCAL_BASE" ;;
        pinned) echo "" ;; # the Dockerfiles' own default
        *) echo "$BASE_IMAGE" ;;
    esac
}

# download_deps DEST EXTRAS -> wheels of runnerq[EXTRAS]'s dependencies, made by the base image's
# own Python and pip (so environment markers such as python_full_version are evaluated for the
# image, not for this host), over the host's network, trusting the host's CA bundle.
download_deps() {
    local dest="$1" extras="$2" base ca run_args=()
    base="$(base_image)"
    [[ -n "$base" ]] || base="$(sed -n 's/^ARG BASE_IMAGE=//p' "$ROOT/docker/Dockerfile.worker")"
    ca="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
    if [[ -r "$ca" ]]; then
        run_args+=(-v "$ca:/etc/runnerq-host-ca.crt:ro" -e PIP_CERT=/etc/runnerq-host-ca.crt)
    fi
    local name
    for name in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT \
        HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
        if [[ -n "${!name:-}" ]]; then run_args+=(-e "$name"); fi
    done
    local index
    index="$("$PYTHON" -m pip config get global.index-url 2>/dev/null || true)"
    if [[ -n "$index" && -z "${PIP_INDEX_URL:-}" ]]; then run_args+=(-e "PIP_INDEX_URL=$index"); fi
    rm -rf "$dest.tmp"
    mkdir -p "$dest.tmp"
    # shellcheck disable=SC2016 # $EXTRAS is expanded by the container's shell
    "${PODMAN[@]}" run --rm --network host --pull=missing "${run_args[@]}" \
        -v "$CONTEXT/wheelhouse/runnerq:/in:ro" -v "$dest.tmp:/out" \
        -e PIP_DISABLE_PIP_VERSION_CHECK=1 -e "EXTRAS=$extras" "$base" \
        sh -euc 'python3 -m venv /tmp/venv
                 /tmp/venv/bin/pip wheel -q --prefer-binary -w /out "$(ls /in/runnerq-*.whl)[$EXTRAS]"' ||
        die "could not download the dependency wheels for runnerq[$extras]"
    rm -f "$dest.tmp"/runnerq-*.whl
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
}

# The build context: wheelhouse/{runnerq,worker,operator}/*.whl.
cmd_wheels() {
    local key deps isolation=(--no-build-isolation)
    rm -rf "$CONTEXT"
    mkdir -p "$CONTEXT/wheelhouse/runnerq"
    # hatchling's wheels are reproducible (fixed timestamps): unchanged sources give the same
    # bytes, so podman's cache of the COPY layer holds.
    "$PYTHON" -c 'import hatchling' 2>/dev/null || isolation=()
    log "building the runnerq wheel"
    "$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps "${isolation[@]}" \
        -w "$CONTEXT/wheelhouse/runnerq" "$ROOT" >/dev/null
    key="$(
        {
            "$PYTHON" - "$CONTEXT"/wheelhouse/runnerq/runnerq-*.whl <<'PY'
import sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
(name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
for line in wheel.read(name).decode().splitlines():
    if line.startswith(("Requires-Dist:", "Requires-Python:")):
        print(line)
PY
            echo "base=$(base_image) arch=$(uname -m)"
            echo "worker=$WORKER_EXTRAS operator=$OPERATOR_EXTRAS"
            if [[ -z "${BASE_IMAGE:-}" ]]; then
                "${PODMAN[@]}" image inspect --format '{{.Id}}' "$LOCAL_BASE"
            fi
        } | sha256sum | cut -c1-16
    )"
    deps="$CACHE/wheelhouse/$key"
    if [[ ! -d "$deps/worker" || ! -d "$deps/operator" ]]; then
        log "making the dependency wheels in $deps (the base image's pip)"
        timed "worker dependency wheels" download_deps "$deps/worker" "$WORKER_EXTRAS"
        timed "operator dependency wheels" download_deps "$deps/operator" "$OPERATOR_EXTRAS"
    fi
    cp -a "$deps/worker" "$deps/operator" "$CONTEXT/wheelhouse/"
}

# podman_logged LOG ARGS... -> podman ARGS with its output in LOG.
podman_logged() {
    local log_file="$1"
    shift
    "${PODMAN[@]}" "$@" >"$log_file" 2>&1
}

build_image() {
    local dockerfile="$1" tag="$2" base
    base="$(base_image)"
    local args=(build --layers --pull=never -f "$ROOT/docker/$dockerfile" -t "$tag"
        --build-arg "VERSION=$VERSION")
    if [[ -n "$base" ]]; then args+=(--build-arg "BASE_IMAGE=$base"); fi
    if [[ "${BASE_IMAGE:-}" == pinned ]]; then args=("${args[@]/--pull=never/--pull=missing}"); fi
    local build_log="$CACHE/build-$dockerfile.log"
    log "building $tag (log: $build_log)"
    timed "$tag" podman_logged "$build_log" "${args[@]}" "$CONTEXT" ||
        die "podman build of $dockerfile failed:"$'\n'"$(tail -n 25 "$build_log")"
}

cmd_build() {
    cmd_deps
    if [[ -z "${BASE_IMAGE:-}" ]]; then cmd_base; fi
    cmd_wheels
    build_image Dockerfile.worker "$WORKER_IMAGE"
    build_image Dockerfile.operator "$OPERATOR_IMAGE"
    # Earlier builds of these images, now untagged (only ours: selected by their title label).
    local title
    for title in runnerq-worker runnerq-operator; do
        "${PODMAN[@]}" image prune -f --filter "label=org.opencontainers.image.title=$title" >/dev/null
    done
    log "built $WORKER_IMAGE and $OPERATOR_IMAGE"
}

cmd_env() {
    cat <<EOF
WORKER_IMAGE=$WORKER_IMAGE
OPERATOR_IMAGE=$OPERATOR_IMAGE
BASE_IMAGE=$(base_image)
CACHE=$CACHE
CONTAINERS_CONF=$CONTAINERS_CONF
EOF
}

case "${1:-}" in
    build) cmd_build ;;
    deps) cmd_deps ;;
    check) cmd_check ;;
    base) cmd_base ;;
    wheels) cmd_wheels ;;
    env) cmd_env ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
