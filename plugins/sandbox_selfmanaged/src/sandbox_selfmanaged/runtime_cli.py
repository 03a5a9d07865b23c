"""``sandbox-executor runtime ...``: build, list and remove runtimes (package sets) in the cache.

::

    sandbox-executor runtime build NAME [--language python --requirements FILE]
    sandbox-executor runtime list [--json]
    sandbox-executor runtime remove NAME

``build`` with a requirements file (pip's format; for JavaScript a package.json or one npm spec
per line) defines or replaces the runtime NAME, then builds it; without one it (re)builds the
definition NAME already has (the built-in ``python`` and ``javascript`` included). A running
executor keeps the build it started with; the next start serves the new one.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from sandbox_selfmanaged.runtime_store import RuntimeStore
from sandbox_selfmanaged.runtimes import (
    DEFAULT_RUNTIMES,
    LANGUAGES,
    RuntimeDefinition,
    Toolchain,
    UnknownRuntimeError,
    default_cache_dir,
    read_requirements,
)


def add_serve_options(serve: argparse.ArgumentParser) -> None:
    """The ``serve`` options choosing which runtimes are warm, and where builds are cached."""
    group = serve.add_argument_group("runtimes (package sets; built on first start, then cached)")
    group.add_argument(
        "--runtimes", default=",".join(DEFAULT_RUNTIMES), help="comma-separated runtimes to serve ('' for bare interpreters)"
    )
    group.add_argument("--cache-dir", type=Path, help="where runtime builds are kept [default: /var/cache/sandbox-executor]")


def parse_runtimes(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def add_commands(commands: Any) -> None:
    """Register ``runtime build|list|remove`` on the ``sandbox-executor`` sub-command parser."""
    runtime = commands.add_parser("runtime", help="build, list and remove runtimes (package sets for sandboxes)")
    actions = runtime.add_subparsers(dest="runtime_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache-dir", type=Path, help="where runtime builds are kept [default: /var/cache/sandbox-executor]")
    build = actions.add_parser("build", parents=[common], help="define (from a requirements file) and build a runtime")
    build.add_argument("name")
    build.add_argument("--language", choices=LANGUAGES, help="the runtime's language (needed with --requirements)")
    build.add_argument("--requirements", type=Path, help="requirements.txt (Python) or package.json / one spec a line (JavaScript)")
    build.add_argument(
        "--preload", type=parse_runtimes, default=(), metavar="MODULES",
        help="Python modules its sandboxes import before their job, comma-separated (e.g. pandas,matplotlib.pyplot)",
    )
    build.add_argument("--python", default="/usr/bin/python3", help="the sandboxes' Python (packages are built for it)")
    build.add_argument("--node", help="the sandboxes' node [default: node on PATH]")
    listing = actions.add_parser("list", parents=[common], help="defined runtimes, their builds and packages")
    listing.add_argument("--json", action="store_true")
    remove = actions.add_parser("remove", parents=[common], help="remove a runtime's definition and builds")
    remove.add_argument("name")


def toolchain_for(language: str, python: str, node: str | None, supervisor: Any) -> Toolchain:
    """The interpreters a build of ``language`` is for (probed like the engine probes them)."""
    from sandbox_selfmanaged.rootfs import find_node, probe_python

    if language == "python":
        return Toolchain(python=probe_python(python, supervisor), node=None)
    node_path = find_node(node)
    result = supervisor.run([node_path, "--version"], timeout=30)
    return Toolchain(python=None, node=node_path, node_version=result.stdout.decode().strip().lstrip("v"))


def run(args: argparse.Namespace) -> int:
    """Run one ``runtime`` sub-command; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    store = RuntimeStore(args.cache_dir or default_cache_dir())
    try:
        if args.runtime_command == "build":
            return _build(args, store)
        if args.runtime_command == "list":
            return _list(args, store)
        removed = store.remove(args.name)
        print(f"removed {args.name}: {', '.join(removed) or 'nothing was built'}")
        return 0
    except (UnknownRuntimeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _build(args: argparse.Namespace, store: RuntimeStore) -> int:
    from sandbox_selfmanaged.errors import ExecutorError
    from sandbox_selfmanaged.procs import ProcessSupervisor

    if args.requirements is not None:
        if args.language is None:
            print("error: --requirements needs --language python|javascript", file=sys.stderr)
            return 2
        definition = RuntimeDefinition(
            name=args.name,
            language=args.language,
            requirements=read_requirements(args.requirements, args.language),
            preload=args.preload,
        )
    else:
        definition = store.definition(args.name)
        if args.language and args.language != definition.language:
            print(f"error: runtime {args.name} is a {definition.language} runtime", file=sys.stderr)
            return 2
        if args.preload:
            print("error: --preload goes with --requirements (it is part of the runtime's definition)", file=sys.stderr)
            return 2
    supervisor = ProcessSupervisor()
    try:
        toolchain = toolchain_for(definition.language, args.python, args.node, supervisor)
        build = store.ensure(definition, toolchain, supervisor, force=True)
    except ExecutorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.requirements is not None:
        store.save_definition(definition)
    print(f"built runtime {build.name} ({build.language}) at {build.path}")
    return 0


def _list(args: argparse.Namespace, store: RuntimeStore) -> int:
    builds: dict[str, list[Any]] = {}
    for build in store.builds():
        builds.setdefault(build.name, []).append(build)
    entries: list[dict[str, Any]] = []
    for name, definition in sorted(store.definitions().items()):
        mine = sorted(builds.get(name, []), key=lambda b: b.built_at)
        latest = mine[-1] if mine else None
        entries.append({
            "name": name,
            "language": definition.language,
            "source": "built-in" if definition.builtin else "custom",
            "requirements": list(definition.requirements),
            "preload": list(definition.preload),
            "built": latest is not None,
            "packages": dict(latest.packages) if latest else {},
            "size_bytes": latest.size_bytes() if latest else 0,
            "builds": [b.path.name for b in mine],
        })
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    for entry in entries:
        state = f"built, {entry['size_bytes'] / 1e6:.0f} MB" if entry["built"] else "not built yet"
        print(f"{entry['name']:<16} {entry['language']:<11} {entry['source']:<8} {state}")
        if entry["packages"]:
            print("    " + ", ".join(f"{k} {v}" for k, v in sorted(entry["packages"].items())))
    return 0
