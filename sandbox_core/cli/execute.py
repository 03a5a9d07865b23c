"""``sandbox exec``: run code through the active (or a named) provider.

What the code prints is shown as it arrives (stdout to stdout, stderr to stderr), then ``main()``'s
value and a one-line summary on stderr. ``--json`` prints the whole result as one JSON document
at the end instead; ``--events`` prints NDJSON for scripts: one ``{"type": "output", ...}`` line
per output event as it arrives, then ``{"type": "result", "result": {...}}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from sandbox_core.cli.common import (
    EXIT_NOT_SUCCESSFUL,
    EXIT_OK,
    EXIT_PROVIDER,
    EXIT_USAGE,
    fail,
    finite_seconds,
    json_object_option,
    open_store,
    print_json,
    set_exit_code,
)
from sandbox_core.model import ExecutionResult, ExecutionStatus
from sandbox_core.streaming import OutputEvent


def _argument_value(text: str) -> Any:
    """``--arg`` values are JSON when they parse as JSON (1, true, null, [..]), else strings."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _collect_arguments(pairs: tuple[str, ...], args_json: str | None) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    if args_json:
        arguments.update(json_object_option(args_json, "--args-json"))
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--arg expects name=value, got {pair!r}", EXIT_USAGE)
        arguments[key] = _argument_value(value)
    return arguments


def _read_code(source: str | None, code: str | None) -> str:
    if code is not None and source is not None:
        fail("give either a FILE or -c CODE, not both", EXIT_USAGE)
    if code is not None:
        return code
    if source is None or source == "-":
        if source is None and sys.stdin.isatty():
            fail("no code: give a FILE, -c CODE, or pipe code on stdin", EXIT_USAGE)
        return sys.stdin.read()
    try:
        with open(source, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        fail(f"cannot read {source}: {exc.strerror}", EXIT_USAGE)


def _exit_code(result: ExecutionResult) -> int:
    if result.status is ExecutionStatus.SUCCESS:
        return EXIT_OK
    if result.status is ExecutionStatus.PROVIDER_ERROR:
        return EXIT_PROVIDER
    return EXIT_NOT_SUCCESSFUL


class _LiveOutput:
    """Writes output events to this process's stdout/stderr as they come, and ends their last lines."""

    def __init__(self) -> None:
        self._open: dict[str, bool] = {}

    def write(self, event: OutputEvent) -> None:
        target = sys.stdout if event.stream == "stdout" else sys.stderr
        target.write(event.text)
        target.flush()
        self._open[event.stream] = not event.text.endswith("\n")

    def end_lines(self) -> None:
        """A newline after output that did not end with one, so what follows starts a line."""
        for stream, target in (("stdout", sys.stdout), ("stderr", sys.stderr)):
            if self._open.get(stream):
                target.write("\n")
                target.flush()


def _print_line(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _print_event(event: OutputEvent) -> None:
    _print_line(event.to_dict())


@click.command("exec")
@click.argument("source", required=False, metavar="[FILE|-]")
@click.option("-c", "code", metavar="CODE", help="The code to run.")
@click.option("--language", "-l", type=click.Choice(["python", "javascript"]), default="python", show_default=True)
@click.option(
    "--arg", "pairs", multiple=True, metavar="NAME=VALUE", help="An argument for main(); VALUE is JSON if it parses, else a string."
)
@click.option("--args-json", metavar="JSON", help="All arguments for main() as one JSON object.")
@click.option(
    "--timeout", type=float, callback=finite_seconds,
    help="Seconds before the execution is stopped [default: the provider's; more than its maximum is capped].",
)
@click.option("--runtime", metavar="NAME", help="Run with this runtime (package set) [default: the provider's default for the language].")
@click.option(
    "--allow", "network", multiple=True, metavar="HOST:PORT",
    help="Let the code reach HOST:PORT over HTTPS (repeat; within what the provider's operator allows) [default: no network].",
)
@click.option("--provider", metavar="NAME", help="Use this provider (with its saved config) instead of the active one.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole structured result as JSON (at the end).")
@click.option("--events", "as_events", is_flag=True, help="Print NDJSON: output events as they arrive, then the result.")
def exec_command(
    source: str | None,
    code: str | None,
    language: str,
    pairs: tuple[str, ...],
    args_json: str | None,
    timeout: float | None,
    runtime: str | None,
    network: tuple[str, ...],
    provider: str | None,
    as_json: bool,
    as_events: bool,
) -> None:
    """Run code in the sandbox; if it defines main(), call it with the arguments and show its value."""
    from sandbox_core.client import SandboxClient

    if as_json and as_events:
        fail("give either --json or --events, not both", EXIT_USAGE)
    text = _read_code(source, code)
    arguments = _collect_arguments(pairs, args_json)
    client = SandboxClient(settings=open_store(), provider=provider)
    live = _LiveOutput()
    on_output = None if as_json else _print_event if as_events else live.write
    try:
        result = client.execute(
            text, language=language, timeout=timeout, arguments=arguments, runtime=runtime, network=network, on_output=on_output
        )
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    finally:
        client.close()
    if as_json:
        print_json(result.to_dict())
    elif as_events:
        _print_line({"type": "result", "result": result.to_dict()})
    else:
        live.end_lines()
        if result.value is not None:
            click.echo(json.dumps(result.value, ensure_ascii=False))
        summary = f"[{result.status.value} in {result.execution_time:.3f}s via {result.provider}"
        if result.exit_code not in (None, 0):
            summary += f", exit code {result.exit_code}"
        if result.stdout_truncated or result.stderr_truncated:
            summary += ", output truncated"
        summary += "]"
        if result.error and result.status is not ExecutionStatus.ERROR:
            summary += f" {result.error.message}"
        click.echo(summary, err=True)
    set_exit_code(_exit_code(result))
