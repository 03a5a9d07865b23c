#!/usr/bin/env bash
# Set up sandbox-core on a fresh Debian/Ubuntu machine and run one of its jobs.
#
#   bash scripts/bootstrap.sh run    # install, then execute a sample main(**arguments) in gVisor
#   bash scripts/bootstrap.sh test   # install (with the test databases), then run the whole test suite
#
# It installs what it needs itself: Debian packages when run as root (runsc for gVisor, Node.js,
# and for `test` PostgreSQL and MariaDB), uv, and the Python environment in .venv. Re-running it
# is cheap: every step checks first. gVisor: RUNSC=/path/to/runsc, or a runsc already on PATH, is
# used as it is (Debian's package is then not installed); where the archive has no runsc package
# it says what to do, `run` stops and `test` runs everything else (the gVisor tests are skipped).
set -euo pipefail

job=${1:-}
case "$job" in
  run|test) ;;
  *) echo "usage: bash scripts/bootstrap.sh run|test" >&2; exit 2 ;;
esac
shift
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

sudo=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
fi
can_apt() { [ "$(id -u)" -eq 0 ] || [ ${#sudo[@]} -gt 0 ]; }

apt_updated=0
apt_update() {
  [ $apt_updated -eq 1 ] && return 0
  log "apt-get update"
  "${sudo[@]}" apt-get update -qq
  apt_updated=1
}

apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! can_apt; then
    log "please install these Debian packages as root: ${missing[*]}"
    return 1
  fi
  apt_update
  log "installing ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# gVisor: a runsc already there ($RUNSC, or on PATH, e.g. a newer upstream release) is used as it
# is; else Debian's runsc package if the archive has one; else the job says what to do (see
# find-runsc.sh) and `test` goes on with the gVisor tests skipped.
find_runsc() {  # sets runsc_decision
  local status=0
  runsc_decision=$(bash plugins/sandbox_selfmanaged/scripts/find-runsc.sh) || status=$?
  if [ "$runsc_decision" = none ] && [ $apt_updated -eq 0 ] && can_apt; then
    apt_update  # the archive's package lists may just be missing
    status=0
    runsc_decision=$(bash plugins/sandbox_selfmanaged/scripts/find-runsc.sh) || status=$?
  fi
  if [ $status -gt 1 ]; then
    exit "$status"  # RUNSC names no executable (find-runsc.sh said so), or the script could not run
  fi
}
find_runsc

# fonts-wqy-microhei: the CJK-capable font the default Python runtime gives matplotlib.
system_packages=(nodejs python3 python3-venv ca-certificates fonts-wqy-microhei)
case "$runsc_decision" in
  "use "*) export RUNSC="${runsc_decision#use }" ;;  # the executor and the tests take it from there
  install) system_packages+=(runsc) ;;
  *)
    if [ "$job" = run ]; then
      log "the run job executes in gVisor: install runsc first (see above)"
      exit 1
    fi
    ;;
esac
if [ "$job" = test ]; then
  system_packages+=(postgresql mariadb-server chromium chromium-driver fonts-dejavu-core)
fi
if command -v node >/dev/null 2>&1; then
  # A Node.js from elsewhere (nvm, NodeSource) is fine; do not fight it with Debian's package.
  system_packages=("${system_packages[@]/nodejs}")
fi
if ! command -v npm >/dev/null 2>&1; then
  system_packages+=(npm)  # builds the JavaScript runtime (axios)
fi
apt_install ${system_packages[@]}

if ! command -v uv >/dev/null 2>&1; then
  if [ ! -x .tools/bin/uv ]; then
    log "installing uv into .tools"
    python3 -m venv .tools
    .tools/bin/pip install --quiet uv
  fi
  export PATH="$PWD/.tools/bin:$PATH"
fi

log "syncing the Python environment (.venv)"
uv sync --all-packages --python python3 --quiet

case "$job" in
  run) exec uv run --no-sync python scripts/main_job.py "$@" ;;
  test) exec uv run --no-sync pytest "$@" ;;
esac
