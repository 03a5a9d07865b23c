"""``sandbox-executor``: the command that serves the executor API on a machine with gVisor.

::

    sandbox-executor serve [--host 127.0.0.1] [--port 8808] [--pool-size N] ...

The token comes from ``SANDBOX_EXECUTOR_TOKEN`` (or ``--token-file``). The variable is gone from
the process before anything else runs: the command re-executes itself without it, handing the
token over in an anonymous in-memory file (a ``memfd``) that it reads and closes at once, so
neither ``/proc/<pid>/environ`` nor any child process shows it. Serving on a non-loopback address
without a token is refused, unless ``--allow-unauthenticated-from`` names the only networks that
may call without one.

``serve`` needs the extra ``sandbox-selfmanaged[executor]`` (FastAPI, uvicorn, ...), which the
provider does not; without it the command says so and exits with status 2. ``runtime`` does not.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sandbox_selfmanaged import __version__, runtime_cli
from sandbox_selfmanaged.limits import DEFAULT_MAXIMUMS, MIB, Limits
from sandbox_selfmanaged.runsc_platform import AUTO, RUNSC_ENV

EXECUTOR_EXTRA = "sandbox-selfmanaged[executor]"
EXECUTOR_MODULES = ("fastapi", "pydantic", "uvicorn", "httptools", "prometheus_client", "msgspec")
"""What ``serve`` imports from the executor extra; the provider (client side) needs none of it."""
TOKEN_ENV = "SANDBOX_EXECUTOR_TOKEN"
TOKEN_FD_ENV = "SANDBOX_EXECUTOR_TOKEN_FD"
"""Set on the re-executed process: the descriptor of the memfd holding the token."""
DEFAULT_PORT = 8808


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def missing_executor_modules() -> list[str]:
    """The modules of the executor extra that cannot be imported here (none once it is installed)."""
    missing = []
    for name in EXECUTOR_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def _parser(profile: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    """The command line; ``profile`` replaces some of ``serve``'s defaults (explicit flags still win)."""
    defaults, maximums = Limits(), DEFAULT_MAXIMUMS
    parser = argparse.ArgumentParser(prog="sandbox-executor", description="Run untrusted code in gVisor sandboxes over HTTP.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the executor API", formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    net = serve.add_argument_group("network and access")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on; non-loopback needs a token")
    net.add_argument("--port", type=int, default=DEFAULT_PORT)
    net.add_argument("--token-file", type=Path, help=f"read the token from this file (default: ${TOKEN_ENV})")
    net.add_argument(
        "--allow-unauthenticated-from",
        metavar="CIDR[,CIDR]",
        help="serve requests without a token to peers in these networks only (e.g. the Docker bridge, 172.17.0.0/16); "
        "a token is still required from anywhere else",
    )
    net.add_argument(
        "--egress-allow", action="append", default=[], metavar="HOST:PORT",
        help="let sandboxes reach HOST:PORT over HTTPS (repeat; *.example.com:443 for every name below a domain); "
        "requests may only narrow this list [default: no network at all]",
    )
    net.add_argument("--max-concurrency", type=int, default=8, help="executions running at once")
    net.add_argument("--max-sessions", type=int, default=16, help="sessions (one dedicated sandbox each) open at once")
    net.add_argument("--queue-size", type=int, default=64, help="requests waiting for a slot before 503s")
    net.add_argument("--queue-timeout", type=float, default=60.0, help="seconds a request may wait for a slot")
    net.add_argument("--max-request-bytes", type=int, default=32 * MIB, help="largest request body (code + arguments)")
    net.add_argument(
        "--max-held-request-bytes", type=int, help="request bodies held at once, queued ones included [default: 8 x --max-request-bytes]"
    )
    net.add_argument("--header-timeout", type=float, default=10.0, help="seconds a client has to send a request's headers")
    net.add_argument(
        "--body-timeout", type=float, default=10.0,
        help="longest pause while a request body arrives, and the grace before --min-body-rate applies",
    )
    net.add_argument("--min-body-rate", type=int, default=32 * 1024, help="bytes per second a request body must average")

    pool = serve.add_argument_group("sandboxes")
    pool.add_argument("--pool-size", type=int, default=2, help="warm sandboxes kept ready per language")
    pool.add_argument("--python-pool-size", type=int, help="override --pool-size for Python")
    pool.add_argument("--javascript-pool-size", type=int, help="override --pool-size for JavaScript")
    pool.add_argument("--boot-concurrency", type=int, default=max(1, os.cpu_count() or 1), help="sandbox boots in flight")
    pool.add_argument("--languages", default="python,javascript", help="comma-separated languages to serve")
    pool.add_argument(
        "--state-dir", type=Path, help="the executor's own directory (emptied on shutdown) [default: /var/lib/sandbox-executor]"
    )
    pool.add_argument(
        "--runsc", default=os.environ.get(RUNSC_ENV) or None,
        help=f"path of runsc [default: ${RUNSC_ENV}, else runsc on PATH, else /usr/bin/runsc]",
    )
    pool.add_argument(
        "--platform", default=AUTO,
        help="gVisor platform: auto (systrap when this runsc has it, else ptrace), systrap, ptrace, or kvm (needs /dev/kvm; "
        "hangs on nested virtualisation)",
    )
    pool.add_argument("--python", default="/usr/bin/python3", help="host Python whose interpreter and stdlib sandboxes get")
    pool.add_argument("--node", help="host Node.js binary [default: node on PATH]")
    pool.add_argument("--cgroup-parent", help="cgroup all sandboxes live under [default: /sandbox-executor-<hash of state dir>]")
    pool.add_argument("--acquire-timeout", type=float, default=30.0, help="seconds an execution waits for a sandbox")
    pool.add_argument("--keep-logs", action="store_true", help="keep each sandbox's runsc log in the state dir's logs/")
    pool.add_argument(
        "--no-restore", dest="restore", action="store_false",
        help="boot every sandbox of a preloading runtime instead of restoring it from a checkpoint",
    )
    pool.add_argument("--debug-runsc", action="store_true", help="runsc --debug logs into the state dir's logs/debug/")

    limits = serve.add_argument_group("limits (defaults for requests that ask for none, and the most they may ask)")
    limits.add_argument("--default-timeout", type=float, default=defaults.timeout)
    limits.add_argument("--max-timeout", type=float, default=maximums.timeout)
    limits.add_argument("--default-memory-mb", type=int, default=defaults.memory_mb)
    limits.add_argument("--max-memory-mb", type=int, default=maximums.memory_mb)
    limits.add_argument("--default-processes", type=int, default=defaults.processes)
    limits.add_argument("--max-processes", type=int, default=maximums.processes)
    limits.add_argument("--default-output-bytes", type=int, default=defaults.max_output_bytes)
    limits.add_argument("--max-output-bytes", type=int, default=maximums.max_output_bytes)
    limits.add_argument("--default-file-bytes", type=int, default=defaults.max_file_bytes, help="largest file code may write")
    limits.add_argument("--max-file-bytes", type=int, default=maximums.max_file_bytes)
    limits.add_argument("--default-artifact-bytes", type=int, default=defaults.max_artifact_bytes)
    limits.add_argument("--max-artifact-bytes", type=int, default=maximums.max_artifact_bytes)
    limits.add_argument("--cpus", type=float, default=defaults.cpus, help="CPU quota of each sandbox")

    serve.add_argument(
        "--ragflow-defaults", action="store_true",
        help="RAGFlow executor_manager's defaults: --port 9385, --default-timeout 10, --default-memory-mb 256, --pool-size 3",
    )
    runtime_cli.add_serve_options(serve)
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    if profile:
        serve.set_defaults(**profile)
    runtime_cli.add_commands(commands)
    return parser


def _read_token(args: argparse.Namespace) -> str | None:
    """The token, from ``--token-file``, the memfd handed over by the re-exec, or the variable.

    Raises ValueError when the handed-over token cannot be read (never serve without it then).
    """
    token = os.environ.pop(TOKEN_ENV, None)
    descriptor = os.environ.pop(TOKEN_FD_ENV, None)
    if descriptor is not None:
        try:
            with os.fdopen(int(descriptor), "rb") as handed_over:
                token = handed_over.read().decode()
        except (OSError, ValueError) as exc:
            raise ValueError(f"could not read the token handed over on descriptor {descriptor}: {exc}") from None
    if args.token_file is not None:
        token = args.token_file.read_text().strip()
    return token or None


def _reexec_without_token() -> None:
    """Run this command again with the token in a memfd instead of the environment.

    ``/proc/<pid>/environ`` shows the environment a process was started with, whatever it later
    removes, so the token can only leave it through a new ``exec``.
    """
    token = os.environ.get(TOKEN_ENV)
    if token is None:
        return
    fd = os.memfd_create("sandbox-executor-token", 0)  # without MFD_CLOEXEC: survives the exec
    os.write(fd, token.encode())
    os.lseek(fd, 0, os.SEEK_SET)
    environment = {key: value for key, value in os.environ.items() if key != TOKEN_ENV}
    environment[TOKEN_FD_ENV] = str(fd)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from sandbox_selfmanaged.engine import EngineConfig, default_state_dir
    from sandbox_selfmanaged.errors import ExecutorError
    from sandbox_selfmanaged.service import ServiceConfig, create_app
    from sandbox_selfmanaged.service.gate import parse_networks
    from sandbox_selfmanaged.service.server import protocol_with_header_timeout

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log = logging.getLogger("sandbox_selfmanaged.cli")
    try:
        token = _read_token(args)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    if args.allow_unauthenticated_from is not None:
        try:
            trusted = parse_networks(args.allow_unauthenticated_from)
        except ValueError as exc:
            log.error("--allow-unauthenticated-from: %s", exc)
            return 2
        log.warning(
            "requests from %s are served WITHOUT a token: anyone who can reach this port from there can run code%s",
            ", ".join(str(network) for network in trusted),
            "; a token is required from elsewhere" if token else "; requests from elsewhere are refused (no token is set)",
        )
    elif token is None and not is_loopback(args.host):
        log.error(
            "refusing to serve on %s without a token: set %s (or --token-file), listen on 127.0.0.1, "
            "or name the networks that may call without a token (--allow-unauthenticated-from)",
            args.host, TOKEN_ENV,
        )
        return 2
    elif token is None:
        log.warning("no %s set: the API is open to every local user of this machine", TOKEN_ENV)
    languages = tuple(part.strip() for part in args.languages.split(",") if part.strip())
    pool_sizes = {
        "python": args.python_pool_size if args.python_pool_size is not None else args.pool_size,
        "javascript": args.javascript_pool_size if args.javascript_pool_size is not None else args.pool_size,
    }
    defaults = Limits(
        timeout=args.default_timeout,
        memory_mb=args.default_memory_mb,
        processes=args.default_processes,
        max_output_bytes=args.default_output_bytes,
        max_file_bytes=args.default_file_bytes,
        max_artifact_bytes=args.default_artifact_bytes,
        cpus=args.cpus,
    )
    maximums = Limits(
        timeout=args.max_timeout,
        memory_mb=args.max_memory_mb,
        processes=args.max_processes,
        max_output_bytes=args.max_output_bytes,
        max_file_bytes=args.max_file_bytes,
        max_artifact_bytes=args.max_artifact_bytes,
        cpus=max(args.cpus, DEFAULT_MAXIMUMS.cpus),
    )
    try:
        engine_config = EngineConfig(
            state_dir=args.state_dir or default_state_dir(),
            runsc=args.runsc,
            platform=args.platform,
            python=args.python,
            node=args.node,
            languages=languages,
            pool_sizes=pool_sizes,
            boot_concurrency=args.boot_concurrency,
            defaults=defaults,
            maximums=maximums,
            cgroup_parent=args.cgroup_parent,
            acquire_timeout=args.acquire_timeout,
            keep_logs=args.keep_logs,
            debug_runsc=args.debug_runsc,
            runtimes=runtime_cli.parse_runtimes(args.runtimes),
            cache_dir=args.cache_dir,
            restore=args.restore,
            egress=tuple(args.egress_allow),
        )
        config = ServiceConfig(
            engine=engine_config,
            token=token,
            max_concurrency=args.max_concurrency,
            max_sessions=args.max_sessions,
            queue_size=args.queue_size,
            queue_timeout=args.queue_timeout,
            max_body_bytes=args.max_request_bytes,
            max_held_bytes=args.max_held_request_bytes,
            trusted_networks=trusted,
            body_timeout=args.body_timeout,
            min_body_rate=args.min_body_rate,
        )
        app = create_app(config)
    except (ExecutorError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            http=protocol_with_header_timeout(args.header_timeout),
            proxy_headers=False,  # the gate trusts peers by their TCP address, never X-Forwarded-For
            log_level=args.log_level,
            access_log=args.log_level == "debug",
            timeout_graceful_shutdown=30,
            server_header=False,
        )
    )
    stop_signals: list[int] = []
    for number in (signal.SIGINT, signal.SIGTERM):
        # uvicorn re-raises the signal that stopped it once it has shut down; with this handler in
        # place that ends in a normal exit, so a clean shutdown exits 0.
        signal.signal(number, lambda received, _frame: stop_signals.append(received))
    server.run()
    if not server.started:
        return 1
    log.info("stopped%s", f" on signal {signal.Signals(stop_signals[0]).name}" if stop_signals else "")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``sandbox-executor`` command; ``argv`` None means the process's own command line,
    which is re-executed without the token in its environment (see the module docstring)."""
    if argv is None:
        _reexec_without_token()
    args = _parser().parse_args(argv)
    if args.command == "serve" and (missing := missing_executor_modules()):
        print(
            f"sandbox-executor serve: the executor service is not installed (missing: {', '.join(missing)}); "
            f"install it with: pip install '{EXECUTOR_EXTRA}'",
            file=sys.stderr,
        )
        return 2
    if args.command == "serve" and args.ragflow_defaults:
        from sandbox_selfmanaged.service.ragflow import RAGFLOW_DEFAULTS

        args = _parser(RAGFLOW_DEFAULTS).parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "runtime":
        return runtime_cli.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
