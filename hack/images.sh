#!/usr/bin/env bash
# Build the runnerq container images with podman, offline: no registry, no package index inside
# the build.
#
#   worker    docker/Dockerfile.worker    `runnerq worker` (the base of users' worker images)
#   operator  docker/Dockerfile.operator  `python -m runnerq_operator`
#
# How (docs/kubernetes.md, "Images"):
#   1. podman, runc and debootstrap from Debian's packages (installed when missing).
#   2. A base image with Python made by debootstrap from this machine's Debian mirror, cached as a
#      tarball outside the repository and imported into podman's storage once. (BASE_IMAGE=pinned
#      uses the Dockerfiles' pinned python:*-slim base instead, for machines that can pull it.)
#   3. A wheelhouse: runnerq's wheel built here, and its dependencies' wheels downloaded by pip for
#      the base image's Python; the dependencies are cached outside the repository, keyed by what
#      runnerq requires. The Dockerfiles install from it with `pip --no-index`.
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
#   IMAGE_PREFIX          image name prefix          (default runnerq/)
#   IMAGE_TAG             image tag                  (default the version in pyproject.toml)
#   DEBIAN_SUITE          debootstrap suite          (default bookworm: Python 3.11)
#   DEBIAN_MIRROR         debootstrap mirror         (default the first apt source for the suite)
#   PYTHON                Python that builds wheels  (default .venv/bin/python, else python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${RUNNERQ_IMAGES_CACHE:-$HOME/.cache/runnerq-images}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
LOCAL_BASE="localhost/runnerq-base:$DEBIAN_SUITE"
IMAGE_PREFIX="${IMAGE_PREFIX:-runnerq/}"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -n1)"
IMAGE_TAG="${IMAGE_TAG:-$VERSION}"
WORKER_IMAGE="${IMAGE_PREFIX}worker:$IMAGE_TAG"
OPERATOR_IMAGE="${IMAGE_PREFIX}operator:$IMAGE_TAG"
CONTEXT="$CACHE/context"
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
    local name="$1" start=$SECONDS
    shift
    "$@"
    log "$name took $((SECONDS - start))s"
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

# The base image's Python version (for the dependency wheels), e.g. 3.11.
base_python() {
    local base
    base="$(base_image)"
    if [[ -n "${BASE_PYTHON:-}" ]]; then
        echo "$BASE_PYTHON"
    elif [[ -z "$base" ]]; then
        sed -n 's/^ARG BASE_IMAGE=python:\([0-9]*\.[0-9]*\).*/\1/p' "$ROOT/docker/Dockerfile.worker"
    else
        "${PODMAN[@]}" run --rm "$base" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])'
    fi
}

# download_deps DEST PYVER EXTRAS -> the wheels of runnerq[EXTRAS]'s dependencies for PYVER.
download_deps() {
    local dest="$1" pyver="$2" extras="$3" wheel
    wheel="$(ls "$CONTEXT"/wheelhouse/runnerq/runnerq-*.whl)"
    mkdir -p "$dest.tmp"
    # pip takes platform tags literally: list every manylinux tag a glibc 2.36 system accepts.
    local platforms=(--platform "manylinux2014_$(uname -m)") glibc
    for glibc in $(seq 17 36); do platforms+=(--platform "manylinux_2_${glibc}_$(uname -m)"); done
    "$PYTHON" -m pip download -q --disable-pip-version-check --only-binary=:all: \
        --implementation cp --python-version "$pyver" "${platforms[@]}" \
        -d "$dest.tmp" "$wheel[$extras]"
    rm -f "$dest.tmp"/runnerq-*.whl
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
}

# The build context: wheelhouse/{runnerq,worker,operator}/*.whl.
cmd_wheels() {
    local pyver key deps
    rm -rf "$CONTEXT"
    mkdir -p "$CONTEXT/wheelhouse/runnerq"
    # hatchling's wheels are reproducible (fixed timestamps): unchanged sources give the same
    # bytes, so podman's cache of the COPY layer holds.
    log "building the runnerq wheel"
    "$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
        -w "$CONTEXT/wheelhouse/runnerq" "$ROOT" >/dev/null
    pyver="$(base_python)"
    [[ "$pyver" =~ ^3\.[0-9]+$ ]] || die "cannot tell the base image's Python version ('$pyver')"
    key="$(
        {
            unzip -p "$CONTEXT"/wheelhouse/runnerq/runnerq-*.whl '*.dist-info/METADATA' |
                grep -E '^(Requires-Dist|Requires-Python):'
            echo "python=$pyver arch=$(uname -m)"
        } | sha256sum | cut -c1-16
    )"
    deps="$CACHE/wheelhouse/$key"
    if [[ ! -d "$deps/worker" || ! -d "$deps/operator" ]]; then
        log "downloading dependency wheels for Python $pyver into $deps"
        timed "dependency wheels" download_deps "$deps/worker" "$pyver" prometheus,hiredis
        download_deps "$deps/operator" "$pyver" operator
    fi
    cp -a "$deps/worker" "$deps/operator" "$CONTEXT/wheelhouse/"
}

build_image() {
    local dockerfile="$1" tag="$2" base
    base="$(base_image)"
    local args=(build --layers --pull=never -f "$ROOT/docker/$dockerfile" -t "$tag"
        --build-arg "VERSION=$VERSION")
    [[ -n "$base" ]] && args+=(--build-arg "BASE_IMAGE=$base")
    [[ "${BASE_IMAGE:-}" == pinned ]] && args=("${args[@]/--pull=never/--pull=missing}")
    log "building $tag"
    timed "$tag" "${PODMAN[@]}" "${args[@]}" "$CONTEXT" >"$CACHE/build-$(basename "$dockerfile").log" 2>&1 ||
        die "podman build of $dockerfile failed: $(tail -n 20 "$CACHE/build-$(basename "$dockerfile").log")"
}

cmd_build() {
    cmd_deps
    if [[ -z "${BASE_IMAGE:-}" ]]; then cmd_base; fi
    cmd_wheels
    build_image Dockerfile.worker "$WORKER_IMAGE"
    build_image Dockerfile.operator "$OPERATOR_IMAGE"
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
