#!/usr/bin/env bash
# `make images`: build the four images from docker/*.Dockerfile, check what is inside them, and run
# the platform from them (scripts/smoke_images.py). The last line printed is the smoke run's verdict:
# `smoke run: passed` (or what failed).
#
#   bash scripts/images.sh                           all four images, then the smoke run
#   bash scripts/images.sh orchestrator gateway      only those (the smoke run needs all four)
#   bash scripts/images.sh --no-smoke                build and check the files, no smoke run
#   bash scripts/images.sh --print-tags              the tags each image gets, nothing else
#
# Engine: Docker where `docker info` answers (the Dockerfiles' defaults: python:3.11.14-slim-trixie,
# PyPI and the PyTorch CPU index). Otherwise buildah (installed with apt when missing): a local
# Debian bookworm base with Python 3.11 made once with debootstrap, pip pointed at the host's own
# package sources (`--build-context pip-sources=...`, see scripts/pip_sources.py), so the CPU images
# get the torch wheel the host tests with. Storage driver overlay where the kernel allows it, else vfs.
# Environment: FLYWHEEL_ENGINE=docker|buildah, FLYWHEEL_TAG (default dev), FLYWHEEL_KEEP_CACHE=1 keeps
# the build cache (intermediate layers), DEBIAN_MIRROR (default http://deb.debian.org/debian).
# Reports (file listings, image configs, the timing table) go to var/images/.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_IMAGES=(orchestrator gateway worker customizer)
TAG="${FLYWHEEL_TAG:-dev}"
CHART_TAG="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' deploy/helm/flywheel/Chart.yaml)"
REPORTS=var/images
BASE_IMAGE=localhost/flywheel-python-base:3.11-bookworm
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
KEEP_CACHE="${FLYWHEEL_KEEP_CACHE:-0}"
PYTHON="${PYTHON:-python3}"
VENV_PYTHON=.venv/bin/python

SMOKE=1
PRINT_TAGS=0
wanted=()
for arg in "$@"; do
  case "$arg" in
    --no-smoke) SMOKE=0 ;;
    --print-tags) PRINT_TAGS=1 ;;
    orchestrator|gateway|worker|customizer) wanted+=("$arg") ;;
    -h|--help) sed -n '2,/^set -euo pipefail/{/^set/!p}' "$0"; exit 0 ;;
    *) echo "images: unknown argument '$arg' (images: ${ALL_IMAGES[*]}; options: --no-smoke, --print-tags)" >&2; exit 2 ;;
  esac
done
((${#wanted[@]})) || wanted=("${ALL_IMAGES[@]}")
[[ -n "$CHART_TAG" ]] || { echo "images: no appVersion in deploy/helm/flywheel/Chart.yaml" >&2; exit 2; }

log() { echo "images: $*" >&2; }
die() { echo "images: $*" >&2; [[ "$SMOKE" == 1 ]] && echo "smoke run: not run (the build failed: $*)"; exit 1; }

# compose's tag (docker/compose.yaml: flywheel-NAME:${FLYWHEEL_TAG:-dev}, the customizer with -cpu) and
# the chart's (values.yaml: flywheel/NAME:<appVersion>, the customizer with tagSuffix -cpu).
tags_of() {
  local suffix=""
  [[ "$1" == customizer ]] && suffix="-cpu"
  echo "flywheel-$1:${TAG}${suffix} flywheel/$1:${CHART_TAG}${suffix}"
}
build_args_of() { [[ "$1" == customizer ]] && echo "--build-arg TORCH_VARIANT=cpu" || true; }
if [[ "$PRINT_TAGS" == 1 ]]; then  # what each image is tagged (tests/deploy/test_helm.py compares)
  for name in "${wanted[@]}"; do echo "$name $(tags_of "$name")"; done
  exit 0
fi
# With the host's pip sources staged (buildah), the CPU images take torch from them, not the PyTorch index.
torch_from_pip_sources() { [[ "$1" == orchestrator ]] || echo "--build-arg TORCH_CPU_INDEX_URL="; }

# --- engine ---------------------------------------------------------------------------------------

ENGINE="${FLYWHEEL_ENGINE:-}"
if [[ -z "$ENGINE" ]]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker; else ENGINE=buildah; fi
fi
case "$ENGINE" in docker|buildah) ;; *) die "FLYWHEEL_ENGINE must be docker or buildah, not '$ENGINE'" ;; esac

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  [[ $(id -u) -eq 0 ]] || die "the build (buildah) or the smoke run needs the Debian packages ${missing[*]}: run as root or install them"
  command -v apt-get >/dev/null || die "no Docker engine answers and this is not a Debian/Ubuntu machine: install Docker or buildah"
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The smoke run runs the images with buildah whatever built them, and starts a redis-server of its
# own (PostgreSQL is the machine's: see scripts/smoke_images.py).
if [[ "$ENGINE" == buildah || "$SMOKE" == 1 ]]; then
  [[ $(id -u) -eq 0 ]] || die "buildah here runs as root (chroot isolation, bind mounts): run as root (or --no-smoke with Docker)"
  packages=(buildah)
  if [[ "$ENGINE" == buildah ]]; then packages+=(debootstrap); fi
  if [[ "$SMOKE" == 1 ]]; then packages+=(redis-server); fi
  apt_install "${packages[@]}"
fi
if [[ "$ENGINE" == buildah ]]; then
  STORAGE_ROOT="$(buildah info --format '{{.store.GraphRoot}}' 2>/dev/null || echo /var/lib/containers/storage)"
  # overlay shares layers between images; vfs copies every layer (several times the disk). Both
  # keep their own folders in the same storage root, so switching is safe.
  DRIVER="${FLYWHEEL_STORAGE_DRIVER:-}"
  if [[ -z "$DRIVER" ]]; then
    DRIVER=vfs
    probe="$(buildah --storage-driver overlay from scratch 2>/dev/null)" && {
      buildah --storage-driver overlay mount "$probe" >/dev/null 2>&1 && DRIVER=overlay
      buildah --storage-driver overlay rm "$probe" >/dev/null 2>&1 || true
    }
  fi
  B=(buildah --storage-driver "$DRIVER")
  log "engine: buildah $(buildah --version | awk '{print $3}') (storage driver $DRIVER, root $STORAGE_ROOT)"
else
  STORAGE_ROOT="$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker)"
  log "engine: docker $(docker version --format '{{.Server.Version}}' 2>/dev/null)"
fi
mkdir -p "$STORAGE_ROOT" "$REPORTS"

# --- clean-up of what this script set up (runs on every exit) -------------------------------------

STAGING=""
MOUNTED=()
SAMPLER=""
# buildah bud removes its containers when a build ends, but not when it is killed.
remove_working_containers() {
  [[ "$ENGINE" == buildah ]] || return 0
  "${B[@]}" containers --format '{{.ContainerID}} {{.ContainerName}}' 2>/dev/null \
    | awk '$2 ~ /working-container(-[0-9]+)?$/ {print $1}' | xargs -r "${B[@]}" rm >/dev/null 2>&1 || true
}
cleanup() {
  [[ -n "$SAMPLER" ]] && kill "$SAMPLER" 2>/dev/null && wait "$SAMPLER" 2>/dev/null
  remove_working_containers
  local m
  for m in "${MOUNTED[@]}"; do umount "$m" 2>/dev/null || log "could not unmount $m: unmount it by hand"; done
  if [[ -n "$STAGING" && -d "$STAGING" ]]; then
    # Never rm -r here: a mount that failed to unmount would take the host's packages with it.
    rm -f "$STAGING/pip.conf" "$STAGING/ca.crt"
    for m in "$STAGING"/source-*; do [[ -d "$m" ]] && ! mountpoint -q "$m" && rmdir "$m"; done
    rmdir "$STAGING" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- peak disk: the filesystem of the image store, sampled every second while a build runs ---------

used_bytes() { df -B1 --output=used "$STORAGE_ROOT" | tail -1 | tr -d ' '; }
start_sampler() {
  local out="$1"
  used_bytes > "$out"
  ( peak=$(cat "$out"); while sleep 1; do u=$(used_bytes); ((u > peak)) && { peak=$u; echo "$u" > "$out"; }; done ) &
  SAMPLER=$!
}
stop_sampler() { kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=""; }
human() { numfmt --to=iec-i --suffix=B --format='%.2f' -- "$1"; }

# --- the local base (buildah): Debian bookworm minbase + Python 3.11, made once and reused ---------

build_base() {
  if "${B[@]}" inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base $BASE_IMAGE exists (reused; \`buildah rmi $BASE_IMAGE\` to rebuild it)"
    return
  fi
  local work started=$SECONDS
  work="$(mktemp -d /var/tmp/flywheel-base.XXXXXX)"
  log "base: debootstrap bookworm (minbase + python3, python3-venv, python-is-python3, ca-certificates) from $DEBIAN_MIRROR"
  if ! debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
      bookworm "$work/rootfs" "$DEBIAN_MIRROR" > "$work/debootstrap.log" 2>&1; then
    tail -20 "$work/debootstrap.log" >&2
    die "debootstrap failed (log above): check that $DEBIAN_MIRROR is reachable, or set DEBIAN_MIRROR"
  fi
  findmnt -rn -o TARGET | grep -q "^$work/" && die "debootstrap left mounts under $work: unmount them and rerun"
  # No apt cache, package lists, host identity or logs in the base.
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/* \
    "$work"/rootfs/var/log/* "$work"/rootfs/etc/hostname "$work"/rootfs/etc/resolv.conf "$work"/rootfs/tmp/*
  : > "$work/rootfs/etc/machine-id"
  tar -C "$work/rootfs" -cf "$work/rootfs.tar" . && rm -rf "$work/rootfs"
  cat > "$work/Containerfile" <<'EOF'
FROM scratch
ADD rootfs.tar /
LABEL org.opencontainers.image.title="flywheel-python-base" \
      org.opencontainers.image.description="Debian bookworm (debootstrap minbase) with Python 3.11: stands in for python:3.11-slim where no registry answers"
ENV LANG=C.UTF-8
CMD ["python3"]
EOF
  "${B[@]}" bud --isolation chroot -q -t "$BASE_IMAGE" -f "$work/Containerfile" "$work" >/dev/null \
    || die "could not import the base root file system as $BASE_IMAGE"
  rm -rf "$work"
  log "base $BASE_IMAGE built in $((SECONDS - started)) s"
}

stage_pip_sources() {
  STAGING="$(mktemp -d /var/tmp/flywheel-pip-sources.XXXXXX)"
  chmod 755 "$STAGING"  # the smoke run's `models` container (uid 10001) reads it too
  local config mounts kind src name
  "$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON -m pip does not run: the build reads the host's pip configuration with it (set PYTHON=...)"
  config="$("$PYTHON" -m pip config list)"
  mounts="$("$PYTHON" scripts/pip_sources.py "$STAGING" <<< "$config")" || die "could not stage the host's pip sources"
  while read -r kind src name; do
    [[ "$kind" == MOUNT ]] || continue
    mkdir "$STAGING/$name"
    mount --bind "$src" "$STAGING/$name" || die "could not bind-mount $src for the build (root needed)"
    MOUNTED+=("$STAGING/$name")
    mount -o remount,bind,ro "$STAGING/$name" || die "could not make the mount of $src read-only"
  done <<< "$mounts"
  log "pip sources for the build (host pip configuration, read-only): $(grep -c . <<< "$mounts") folders; pip.conf:"
  sed 's/^/    /' "$STAGING/pip.conf" >&2
}

# --- build, list, measure -------------------------------------------------------------------------

declare -A BUILD_S SIZE PEAK
build_one() {
  local name="$1" tags tag_args=() peak_file started
  read -r -a tags <<< "$(tags_of "$name")"
  for t in "${tags[@]}"; do tag_args+=(-t "$t"); done
  peak_file="$(mktemp)"
  local before; before=$(used_bytes)
  start_sampler "$peak_file"
  started=$SECONDS
  log "building $name -> ${tags[*]}"
  # shellcheck disable=SC2046  # build_args_of prints flags to split
  if [[ "$ENGINE" == buildah ]]; then
    "${B[@]}" bud --isolation chroot --layers --force-rm --pull-never \
      --build-context "pip-sources=$STAGING" --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
      $(build_args_of "$name") $(torch_from_pip_sources "$name") -f "docker/$name.Dockerfile" "${tag_args[@]}" . > "$REPORTS/$name.build.log" 2>&1 \
      || { stop_sampler; tail -40 "$REPORTS/$name.build.log" >&2; die "building $name failed (log: $REPORTS/$name.build.log)"; }
  else
    docker build $(build_args_of "$name") -f "docker/$name.Dockerfile" "${tag_args[@]}" . > "$REPORTS/$name.build.log" 2>&1 \
      || { stop_sampler; tail -40 "$REPORTS/$name.build.log" >&2; die "building $name failed (log: $REPORTS/$name.build.log)"; }
  fi
  BUILD_S[$name]=$((SECONDS - started))
  stop_sampler
  PEAK[$name]=$(( $(cat "$peak_file") - before ))
  rm -f "$peak_file"
  list_image "$name" "${tags[0]}"
  SIZE[$name]=$(image_size "$name")
  log "$name: built in ${BUILD_S[$name]} s, $(human "${SIZE[$name]}"), peak disk +$(human "${PEAK[$name]}")"
}

# The bytes of the image's files (from its listing): the same measure with either engine.
image_size() { awk -F'\t' '$6 == "f" {s += $2} END {printf "%d\n", s}' "$REPORTS/$1.files.tsv"; }

# Every file of the image (path, size, uid, gid, mode, type) and its config, for tests/deploy/test_images.py.
FIND_ARGS=(-xdev \( -path '*/proc' -o -path '*/sys' -o -path '*/dev' \) -prune -o -printf '%P\t%s\t%U\t%G\t%m\t%y\n')
list_image() {
  local name="$1" image="$2" container mountpoint part="$REPORTS/.$1.part"
  # Written under a temporary name and moved into place: a test run beside the build (.ci/run) sees a
  # listing whole or not at all.
  if [[ "$ENGINE" == buildah ]]; then
    container="$("${B[@]}" from --pull-never "$image")"
    mountpoint="$("${B[@]}" mount "$container")"
    find "$mountpoint" "${FIND_ARGS[@]}" | grep -v $'^\t' > "$part.files.tsv"
    "${B[@]}" umount "$container" >/dev/null
    "${B[@]}" rm "$container" >/dev/null
    "${B[@]}" inspect --type image "$image" \
      | "$PYTHON" -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["OCIv1"]["config"]))' > "$part.config.json"
  else
    docker run --rm --user 0 --entrypoint find "$image" / "${FIND_ARGS[@]}" | grep -v $'^\t' > "$part.files.tsv"
    docker image inspect --format '{{json .Config}}' "$image" > "$part.config.json"
  fi
  printf '{"image": "%s", "engine": "%s", "tags": "%s"}\n' "$image" "$ENGINE" "$(tags_of "$name")" > "$part.image.json"
  mv "$part.config.json" "$REPORTS/$name.config.json"
  mv "$part.files.tsv" "$REPORTS/$name.files.tsv"
  mv "$part.image.json" "$REPORTS/$name.image.json"
}

remove_build_leftovers() {
  if [[ "$KEEP_CACHE" == 1 ]]; then log "keeping the build cache (FLYWHEEL_KEEP_CACHE=1)"; return; fi
  if [[ "$ENGINE" == buildah ]]; then
    remove_working_containers
    "${B[@]}" rmi --prune >/dev/null 2>&1 || true  # untagged images: the --layers cache, replaced images
  else
    docker image prune -f >/dev/null
    docker builder prune -f >/dev/null 2>&1 || true
  fi
}

# --- main -------------------------------------------------------------------------------------------

started_all=$SECONDS
for name in "${wanted[@]}"; do rm -f "$REPORTS/$name".{files.tsv,config.json,image.json,build.log}; done
disk_before=$(used_bytes)
if [[ "$ENGINE" == buildah ]]; then
  build_base
  stage_pip_sources
fi
for name in "${wanted[@]}"; do build_one "$name"; done
after_builds=$(( $(used_bytes) - disk_before ))
remove_build_leftovers
after_prune=$(( $(used_bytes) - disk_before ))

{
  printf '%-14s %-44s %10s %10s %14s\n' image tags "build s" size "peak disk"
  for name in "${wanted[@]}"; do
    printf '%-14s %-44s %10s %10s %14s\n' "$name" "$(tags_of "$name")" "${BUILD_S[$name]}" \
      "$(human "${SIZE[$name]}")" "+$(human "${PEAK[$name]}")"
  done
  echo "engine $ENGINE${DRIVER:+ ($DRIVER)}; all builds $((SECONDS - started_all)) s; disk used: $(human "$after_builds") more after the builds, $(human "$after_prune") more once the build cache is removed"
  echo "(size: the bytes of the image's files; peak disk: the most the file system held above its level before that build, sampled each second)"
} | tee "$REPORTS/build-summary.txt"

# What is inside: no weights, secrets or caches; non-root; torch only where it belongs, and CPU.
[[ -x "$VENV_PYTHON" ]] || die "no $VENV_PYTHON to run the image checks: run \`make setup\` first"
log "checking the images' files (tests/deploy/test_images.py)"
FLYWHEEL_IMAGE_REPORTS="$REPORTS" FLYWHEEL_IMAGE_REPORTS_REQUIRED=1 "$VENV_PYTHON" -m pytest -q -p no:cacheprovider \
  tests/deploy/test_images.py >&2 || die "the image checks failed (above)"

if [[ "$SMOKE" == 1 ]]; then
  missing=()
  for name in "${ALL_IMAGES[@]}"; do [[ -f "$REPORTS/$name.image.json" ]] || missing+=("$name"); done
  if ((${#missing[@]})); then
    echo "smoke run: not run (it needs all four images; not built now: ${missing[*]})"
    exit 1
  fi
  # The staged pip sources (buildah) reach the `models` service too: its download needs this network's CA.
  FLYWHEEL_ENGINE="$ENGINE" FLYWHEEL_STORAGE_DRIVER="${DRIVER:-}" FLYWHEEL_PIP_SOURCES="$STAGING" \
    "$VENV_PYTHON" scripts/smoke_images.py --tag "$TAG"
fi
