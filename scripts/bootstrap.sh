#!/usr/bin/env bash
# Set up sandbox-core on a fresh Debian/Ubuntu machine and run one of its jobs.
#
#   bash scripts/bootstrap.sh run    # install, then execute a sample main(**arguments) in gVisor
#   bash scripts/bootstrap.sh test   # install (with the test databases), then run the whole test suite
#
# It installs what it needs itself: Debian packages when run as root (runsc for gVisor, Node.js,
# and for `test` PostgreSQL and MariaDB), uv, and the Python environment in .venv. Re-running it
# is cheap: every step checks first.
set -euo pipefail

job=${1:-}
case "$job" in
  run|test) ;;
  *) echo "usage: bash scripts/bootstrap.sh run|test" >&2; exit 2 ;;
esac
shift
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      log "please install these Debian packages as root: ${missing[*]}"
      return 1
    fi
    sudo=(sudo)
  fi
  if [ $apt_updated -eq 0 ]; then
    log "apt-get update"
    "${sudo[@]}" apt-get update -qq
    apt_updated=1
  fi
  log "installing ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# fonts-wqy-microhei: the CJK-capable font the default Python runtime gives matplotlib.
system_packages=(runsc nodejs python3 python3-venv ca-certificates fonts-wqy-microhei)
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
