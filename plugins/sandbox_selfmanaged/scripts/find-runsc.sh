#!/usr/bin/env bash
# Decide where gVisor's runsc comes from, and say what was found and what to do.
# Used by install-system-deps.sh and the repository's scripts/bootstrap.sh; it installs nothing.
#
# Prints one decision on stdout, and what it found on stderr:
#   use PATH    a runsc to use as it is: $RUNSC, or one already on PATH (e.g. a newer gVisor
#               release than Debian's: it is kept, never replaced by Debian's package)
#   install     none yet, and this Debian/Ubuntu archive has a runsc package: install it
#   none        none yet, and no runsc package here (exit 1): install gVisor's own release
# Exit 2 when RUNSC names something that is not an executable file.
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }

docs="docs/providers/self-managed.md (\"Installing gVisor\")"

describe() {  # "runsc version X at PATH", or why PATH does not answer like a runsc
  local version
  if version=$("$1" --version 2>/dev/null) && [ -n "$version" ]; then
    printf '%s at %s' "${version%%$'\n'*}" "$1"
  else
    printf '%s (its --version failed: is it a runsc for this machine?)' "$1"
  fi
}

if [ -n "${RUNSC:-}" ]; then
  if [ -f "$RUNSC" ] && [ -x "$RUNSC" ]; then
    log "using RUNSC: $(describe "$RUNSC")"
    echo "use $RUNSC"
    exit 0
  fi
  log "RUNSC=$RUNSC is not an executable file: point it at a runsc binary, or unset it to use runsc on PATH"
  exit 2
fi

if found=$(command -v runsc 2>/dev/null); then
  if dpkg-query -S "$found" >/dev/null 2>&1; then
    log "found Debian's $(describe "$found")"
  else
    log "found $(describe "$found"), not from a Debian package: using it as it is (set RUNSC=/path to use another)"
  fi
  echo "use $found"
  exit 0
fi

candidate=""
if command -v apt-cache >/dev/null 2>&1; then
  candidate=$(apt-cache policy runsc 2>/dev/null | sed -n 's/^ *Candidate: *//p' | head -n 1)
fi
if [ -n "$candidate" ] && [ "$candidate" != "(none)" ]; then
  log "no runsc on PATH; this archive has the runsc package ($candidate): installing it"
  echo install
  exit 0
fi

release=$( (. /etc/os-release 2>/dev/null && printf '%s' "${PRETTY_NAME:-}") || true)
log "no runsc on PATH, and ${release:-this system}'s package archive has no runsc package"
log "install gVisor's own release (see $docs), then put runsc on PATH or set RUNSC=/path/to/runsc"
log "until then the gVisor tests are skipped and the self-managed executor cannot start sandboxes"
echo none
exit 1
