#!/usr/bin/env bash
# Provide the binaries of a real Kubernetes control plane for the end-to-end tests.
#
# Everything is built from Go modules (there is no release download on these machines) and cached
# outside the repository, keyed by the Kubernetes version:
#
#   ${RUNNERQ_E2E_CACHE:-$HOME/.cache/runnerq-e2e}/<k8s-version>/bin/
#       etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm kwok
#
# Usage:
#   hack/control-plane.sh ensure     build whatever is missing, verify every version (idempotent)
#   hack/control-plane.sh env        print the pinned versions and cache paths as NAME=value lines
#
# Needs Go >= 1.26 and the Go module proxy. A cold build takes about 11 minutes on 2 cores
# (downloads into the Go module cache, compiles into the Go build cache, both kept); a warm
# `ensure` takes under a second. kube-scheduler and kwok (fake nodes) are optional: set
# RUNNERQ_E2E_OPTIONAL=0 to skip them. RUNNERQ_K8S_VERSION overrides the pinned Kubernetes version.
set -euo pipefail

K8S_VERSION="${RUNNERQ_K8S_VERSION:-v1.35.4}"
ETCD_VERSION="v3.6.16"
HELM_VERSION="v3.21.4"
KWOK_VERSION="v0.8.0"

CACHE_ROOT="${RUNNERQ_E2E_CACHE:-$HOME/.cache/runnerq-e2e}"
BIN_DIR="$CACHE_ROOT/$K8S_VERSION/bin"
KWOK_STAGES="$CACHE_ROOT/$K8S_VERSION/kwok/stages-$KWOK_VERSION.yaml"
BUILD_OPTIONAL="${RUNNERQ_E2E_OPTIONAL:-1}"

export CGO_ENABLED=0
export GOFLAGS="-mod=mod"
export GOTOOLCHAIN=local

log() { printf '[control-plane %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# expected_version NAME -> the text that NAME's version output must contain.
expected_version() {
    case "$1" in
        etcd) echo "etcd Version: ${ETCD_VERSION#v}" ;;
        kube-apiserver | kube-controller-manager | kube-scheduler) echo "Kubernetes $K8S_VERSION" ;;
        kubectl) echo "\"gitVersion\": \"$K8S_VERSION\"" ;;
        helm) echo "$HELM_VERSION" ;;
        kwok) echo "${KWOK_VERSION#v}" ;;
        *) die "unknown binary $1" ;;
    esac
}

# version_output PATH -> what the binary says about its version.
version_output() {
    case "$(basename "$1")" in
        kubectl) "$1" version --client -o json ;;
        helm) "$1" version --short ;;
        *) "$1" --version ;;
    esac
}

# is_current PATH -> true when PATH exists and reports the pinned version (helm: and was built
# knowing its Kubernetes version, see helm_ldflags).
is_current() {
    local path="$1" want
    want="$(expected_version "$(basename "$path")")"
    [[ -x "$path" ]] && version_output "$path" 2>&1 | grep -qF -- "$want" || return 1
    [[ "$(basename "$path")" != helm || "$(helm_default_kube "$path")" != v1.20.0 ]]
}

# install_verified SRC -> check SRC's version, then move it into BIN_DIR atomically.
install_verified() {
    local src="$1" name
    name="$(basename "$src")"
    is_current "$src" || die "$name reports '$(version_output "$src" 2>&1 | head -n1)', wanted '$(expected_version "$name")'"
    mkdir -p "$BIN_DIR"
    mv -f "$src" "$BIN_DIR/$name.tmp"
    mv -f "$BIN_DIR/$name.tmp" "$BIN_DIR/$name"
}

# timed NAME CMD... -> run CMD, then log how long it took.
timed() {
    local name="$1" start=$SECONDS
    shift
    "$@"
    log "built $name in $((SECONDS - start))s"
}

# in_dir DIR CMD... -> run CMD in DIR.
in_dir() {
    local dir="$1"
    shift
    (cd "$dir" && "$@")
}

# k8s_module_dir -> a throw-away module that builds k8s.io/kubernetes's commands.
# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging/...;
# each is published as v0.<minor>.<patch>, so the wrapper replaces them with those versions.
k8s_module_dir() {
    local dir="$1" gomod staging_version="v0.${K8S_VERSION#v1.}"
    gomod="$(module_dir "k8s.io/kubernetes@$K8S_VERSION")/go.mod"
    [[ -f "$gomod" ]] || die "could not download k8s.io/kubernetes@$K8S_VERSION"
    {
        echo "module runnerq.invalid/k8s-build"
        echo
        grep -E '^go [0-9.]+$' "$gomod"
        grep -E '^godebug ' "$gomod" || true
        echo
        echo "require k8s.io/kubernetes $K8S_VERSION"
        echo
        echo "replace ("
        awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print "\t" $1 " => " $1 " '"$staging_version"'"}' "$gomod"
        echo ")"
    } >"$dir/go.mod"
    grep -q '=> k8s.io/api ' "$dir/go.mod" || die "no staging modules found in $gomod"
}

k8s_ldflags() {
    local minor="${K8S_VERSION#v1.}" pkg flags="-s -w"
    minor="${minor%%.*}"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    echo "$flags"
}

build_k8s() {
    local work="$1" names=("$@") name
    names=("${names[@]:1}")
    mkdir -p "$work/k8s"
    log "preparing k8s.io/kubernetes@$K8S_VERSION wrapper module"
    k8s_module_dir "$work/k8s"
    log "the first Kubernetes binary compiles most of Kubernetes (minutes); the others reuse it"
    for name in "${names[@]}"; do
        log "building $name $K8S_VERSION"
        timed "$name" in_dir "$work/k8s" go build -trimpath -tags=selinux,notest \
            -ldflags "$(k8s_ldflags)" -o "$work/out/$name" "k8s.io/kubernetes/cmd/$name"
        install_verified "$work/out/$name"
    done
}

build_etcd() {
    local work="$1" dir="$1/etcd"
    mkdir -p "$dir"
    log "building etcd $ETCD_VERSION"
    cat >"$dir/go.mod" <<EOF
module runnerq.invalid/etcd-build

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
    cat >"$dir/main.go" <<'EOF'
// Command etcd runs the etcd server; go.etcd.io/etcd/server/v3's own main cannot be installed
// with `go install` because of its replace lines.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
EOF
    timed etcd in_dir "$dir" go build -trimpath -ldflags "-s -w" -o "$work/out/etcd" .
    install_verified "$work/out/etcd"
}

# helm's own Makefile sets the Kubernetes version that `helm template` (no cluster) and `helm lint`
# assume from its client-go (v0.Y.Z -> 1.Y); without it they assume v1.20.0, and a chart with
# kubeVersion >= 1.27 would not render with a plain `helm template`.
helm_ldflags() {
    local gomod minor flags pkg
    gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')"
    minor="$(sed -n 's/^\s*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod")"
    [[ -n "$minor" ]] || die "cannot tell helm $HELM_VERSION's client-go version from $gomod"
    flags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    flags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
        flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
    done
    echo "$flags"
}

# helm_default_kube PATH -> the Kubernetes version PATH's `helm template` assumes.
helm_default_kube() {
    local chart
    chart="$(mktemp -d "${TMPDIR:-/tmp}/runnerq-helm-probe.XXXXXX")"
    mkdir -p "$chart/templates"
    printf 'apiVersion: v2\nname: probe\nversion: 0.0.1\n' >"$chart/Chart.yaml"
    printf '# kube {{ .Capabilities.KubeVersion.Version }}\n' >"$chart/templates/probe.yaml"
    HELM_CACHE_HOME="$chart/.h" HELM_CONFIG_HOME="$chart/.h" HELM_DATA_HOME="$chart/.h" \
        "$1" template probe "$chart" 2>&1 | sed -n 's/^# kube //p'
    rm -rf "$chart"
}

build_helm() {
    local work="$1"
    log "building helm $HELM_VERSION"
    timed helm env GOBIN="$work/out" go install -trimpath -ldflags "$(helm_ldflags)" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    install_verified "$work/out/helm"
}

build_kwok() {
    local work="$1"
    log "building kwok $KWOK_VERSION"
    timed kwok env GOBIN="$work/out" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
    install_verified "$work/out/kwok"
}

# module_dir MODULE@VERSION -> the module's directory in the module cache (downloading it if needed).
module_dir() {
    go mod download -json "$1" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p'
}

# kwok refuses to start without Stage objects; its module ships the ones kwokctl uses.
ensure_kwok_stages() {
    local dir stage
    local stages=(node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease
        pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete)
    if [[ -s "$KWOK_STAGES" ]]; then
        log "ok kwok stages"
        return 0
    fi
    dir="$(module_dir "sigs.k8s.io/kwok@$KWOK_VERSION")"
    mkdir -p "$(dirname "$KWOK_STAGES")"
    for stage in "${stages[@]}"; do
        echo "---"
        cat "$dir/kustomize/stage/$stage.yaml"
    done >"$KWOK_STAGES.tmp"
    mv -f "$KWOK_STAGES.tmp" "$KWOK_STAGES"
    log "wrote $KWOK_STAGES"
}

ensure() {
    local start=$SECONDS work name missing=() k8s=()
    local wanted=(etcd kube-apiserver kube-controller-manager kubectl helm)
    [[ "$BUILD_OPTIONAL" == 1 ]] && wanted+=(kube-scheduler kwok)
    command -v go >/dev/null || die "go is required to build the control plane"
    # One build at a time (e.g. pytest and `cluster up` started together on a cold cache).
    mkdir -p "$CACHE_ROOT"
    exec 9>"$CACHE_ROOT/.lock"
    flock 9
    for name in "${wanted[@]}"; do
        if is_current "$BIN_DIR/$name"; then
            log "ok $name"
        else
            missing+=("$name")
        fi
    done
    if [[ "$BUILD_OPTIONAL" == 1 ]]; then ensure_kwok_stages; fi
    if ((${#missing[@]} == 0)); then
        log "all binaries present in $BIN_DIR ($((SECONDS - start))s)"
        return 0
    fi
    log "to build: ${missing[*]} (Go build cache: $(go env GOCACHE))"
    work="$(mktemp -d "${TMPDIR:-/tmp}/runnerq-e2e-build.XXXXXX")"
    # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
    trap "rm -rf '$work'" EXIT
    mkdir -p "$work/out"
    for name in "${missing[@]}"; do
        case "$name" in
            kube-apiserver | kube-controller-manager | kube-scheduler | kubectl) k8s+=("$name") ;;
        esac
    done
    if [[ " ${missing[*]} " == *" etcd "* ]]; then build_etcd "$work"; fi
    if ((${#k8s[@]} > 0)); then build_k8s "$work" "${k8s[@]}"; fi
    if [[ " ${missing[*]} " == *" helm "* ]]; then build_helm "$work"; fi
    if [[ " ${missing[*]} " == *" kwok "* ]]; then build_kwok "$work"; fi
    log "all binaries present in $BIN_DIR ($((SECONDS - start))s)"
}

main() {
    case "${1:-}" in
        ensure) ensure ;;
        env)
            echo "KUBERNETES_VERSION=$K8S_VERSION"
            echo "ETCD_VERSION=$ETCD_VERSION"
            echo "HELM_VERSION=$HELM_VERSION"
            echo "KWOK_VERSION=$KWOK_VERSION"
            echo "BIN_DIR=$BIN_DIR"
            echo "KWOK_STAGES=$KWOK_STAGES"
            ;;
        *)
            echo "usage: $0 {ensure|env}" >&2
            exit 2
            ;;
    esac
}

main "$@"
