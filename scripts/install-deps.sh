#!/bin/sh
# Installs the Debian packages sdrender builds and tests with.
# Idempotent: installs only what is missing and prints nothing when all is present.
# Runs as root (or through sudo when it is available).
#   scripts/install-deps.sh            what sdrender builds and tests with
#   scripts/install-deps.sh --slurm    Slurm and munge for `make check-slurm` (a test cluster on this machine)
#   scripts/install-deps.sh --browser  Debian's headless-capable chromium for `make check-report`
set -eu

PKGS="build-essential pkg-config make gcc
libopenmpi-dev openmpi-bin
libopenblas-dev libdnnl-dev
libpng-dev zlib1g-dev
libsqlite3-dev sqlite3
libcmocka-dev
libjansson-dev
libyaml-dev
clang libclang-rt-dev libomp-dev"
# clang, its libFuzzer/sanitizer runtimes (libclang-rt-dev) and OpenMP (libomp-dev): make fuzz
if [ "${1:-}" = --slurm ]; then
    # libpmix-dev: Slurm's mpi/pmix plugin dlopens the unversioned libpmix.so it ships
    PKGS="slurmctld slurmd slurm-client munge libpmix-dev"
elif [ "${1:-}" = --browser ]; then
    # the report's browser test loads build pages in `chromium --headless` (no network, no profile)
    PKGS="chromium"
fi

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "install-deps: missing packages:$missing; run this script as root" >&2
        exit 1
    fi
fi
echo "install-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
