#!/usr/bin/env bash
# Build the wheel and the sdist of every distribution in this repository.
#
#   bash scripts/build-dists.sh [OUTDIR]     # default: dist/ (git-ignored)
#
# The distributions are sandbox-core (the repository root) and every plugin with a
# plugins/*/pyproject.toml (sandbox-selfmanaged, sandbox-aliyun, sandbox-e2b, ...). Each is built
# on its own with `uv build --no-sources`: first the sdist, then the wheel *from that sdist*, so a
# file missing from an sdist fails the build here rather than for a user. `--no-sources` ignores
# the workspace links in [tool.uv.sources], so the metadata is exactly what a user's installer
# sees. Files already in OUTDIR are left alone; use a fresh OUTDIR to publish.
# See docs/packaging.md.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$root/dist"}
mkdir -p "$out"
out=$(cd "$out" && pwd)

if ! command -v uv >/dev/null 2>&1; then
  if [ -x "$root/.tools/bin/uv" ]; then
    export PATH="$root/.tools/bin:$PATH"
  else
    echo "build-dists.sh needs uv (bash scripts/bootstrap.sh installs it, or: pip install uv)" >&2
    exit 1
  fi
fi

projects=("$root")
for manifest in "$root"/plugins/*/pyproject.toml; do
  [ -e "$manifest" ] && projects+=("$(dirname "$manifest")")
done

for project in "${projects[@]}"; do
  label=${project#"$root"}
  printf '==> building %s\n' "${label#/}" >&2
  uv build --quiet --no-sources --out-dir "$out" "$project"
done

printf '==> distributions in %s:\n' "$out" >&2
ls -1 "$out" | grep -E '\.(whl|tar\.gz)$' >&2
