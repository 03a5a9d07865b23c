#!/usr/bin/env bash
# Install what the sandbox-executor needs from Debian/Ubuntu packages, if it is missing:
#   runsc                                  gVisor (one static binary; no Docker needed), unless
#                                          RUNSC=/path or a runsc on PATH is there already (see
#                                          find-runsc.sh: a newer upstream release is kept as is)
#   python3-minimal, libpython3-stdlib     the interpreter and standard library sandboxes get
#   nodejs, npm                            for JavaScript and its runtimes (skipped when already on PATH)
#   fonts-wqy-microhei                     the CJK-capable font of the default Python runtime's matplotlib
# Idempotent: packages already installed are left alone and apt is not touched at all then.
# Run as root (or with sudo available). Usage: install-system-deps.sh [--no-node]
set -euo pipefail

want_node=1
for arg in "$@"; do
  case "$arg" in
    --no-node) want_node=0 ;;
    *) echo "usage: $0 [--no-node]" >&2; exit 2 ;;
  esac
done

log() { printf '==> %s\n' "$*" >&2; }

sudo=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
fi

here=$(dirname "$0")
status=0
runsc_decision=$(bash "$here/find-runsc.sh") || status=$?
if [ "$runsc_decision" = none ] && { [ "$(id -u)" -eq 0 ] || [ ${#sudo[@]} -gt 0 ]; }; then
  log "apt-get update (the archive's package lists may just be missing)"
  "${sudo[@]}" apt-get update -qq
  status=0
  runsc_decision=$(bash "$here/find-runsc.sh") || status=$?
fi
if [ $status -ne 0 ]; then
  exit "$status"  # find-runsc.sh said what it found and what to do
fi

packages=(python3-minimal libpython3-stdlib fonts-wqy-microhei)
if [ "$runsc_decision" = install ]; then
  packages+=(runsc)
fi
if [ "$want_node" -eq 1 ] && ! command -v node >/dev/null 2>&1; then
  packages+=(nodejs)
fi
if [ "$want_node" -eq 1 ] && ! command -v npm >/dev/null 2>&1; then
  packages+=(npm)
fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  log "system packages for sandbox-executor are present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ] && [ ${#sudo[@]} -eq 0 ]; then
  log "please install these Debian packages as root: ${missing[*]}"
  exit 1
fi

log "installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

if [ "$runsc_decision" = install ]; then
  runsc_path=$(command -v runsc || true)
  if [ -z "$runsc_path" ]; then
    log "runsc is still not on PATH after installing the runsc package"
    exit 1
  fi
  log "$("$runsc_path" --version | head -n1) at $runsc_path"
fi
