#!/usr/bin/env bash
# Install the database servers the settings tests start themselves (tests/settings/conftest.py):
# PostgreSQL and MariaDB, from Debian. Idempotent: does nothing when both are installed.
# The packages' own services are not needed (the tests run private servers on free ports).
set -euo pipefail

packages=(postgresql mariadb-server)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-databases: ${packages[*]} already installed"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "install-databases: need root (or sudo) to install: ${missing[*]}" >&2
  exit 1
fi

echo "install-databases: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
