"""``sandbox session ...`` and ``sandbox repl``: stateful sessions from the command line.

``sandbox session new`` prints a session id; the other subcommands take it, in this shell or any
other with the same settings (the backend keeps the session until ``close``, its idle timeout or
its max lifetime). ``sandbox repl`` opens a session and runs each entry typed (or piped) in it,
like Python's own prompt: a bare expression's value is printed, a block ends with an empty line.
"""

from __future__ import annotations

import ast
import codeop
import json
import os
import sys
from typing import Any

import click

from sandbox_core.cli.common import (
    EXIT_USAGE,
    fail,
    finite_seconds,
    open_store,
    print_json,
    set_exit_code,
)
from sandbox_core.cli.execute import _collect_arguments, _exit_code, _LiveOutput, _print_event, _print_line, _read_code
from sandbox_core.model import DEFAULT_TIMEOUT, ExecutionResult, ExecutionStatus
from sandbox_core.sessions import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_LIFETIME

REPL_VALUE_NAME = "_"


def _client(provider: str | None) -> Any:
    from sandbox_core.client import SandboxClient

    return SandboxClient(settings=open_store(), provider=provider)


def _attached(session_id: str) -> tuple[Any, Any]:
    client = _client(session_id.partition(":")[0] or None)
    try:
        return client, client.attach_session(session_id)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)


def _run_live(session: Any, code: str, **options: Any) -> ExecutionResult:
    """Run ``code`` in ``session``, its output written to stdout/stderr as it comes; then the value and any failure."""
    live = _LiveOutput()
    result: ExecutionResult = session.execute(code, on_output=live.write, **options)
    live.end_lines()
    if result.value is not None:
        click.echo(json.dumps(result.value, ensure_ascii=False))
    if result.status is not ExecutionStatus.SUCCESS:
        note = f"[{result.status.value}]"
        if result.error and result.status is not ExecutionStatus.ERROR:
            note += f" {result.error.message}"
        if result.metadata.get("session_restarted"):
            note += " (the session's interpreter was restarted: its names are lost, its files kept)"
        click.echo(note, err=True)
    return result


session_options = [
    click.option("--language", "-l", type=click.Choice(["python"]), default="python", show_default=True),
    click.option("--runtime", metavar="NAME", help="Runtime (package set) [default: the provider's default]."),
    click.option("--idle-timeout", type=float, callback=finite_seconds, default=DEFAULT_IDLE_TIMEOUT, show_default=True,
                 help="Seconds unused after which the backend ends the session."),
    click.option("--max-lifetime", type=float, callback=finite_seconds, default=DEFAULT_MAX_LIFETIME, show_default=True,
                 help="Seconds after which the backend ends the session regardless."),
    click.option("--provider", metavar="NAME", help="Use this provider (with its saved config) instead of the active one."),
]


def _with_session_options(command: Any) -> Any:
    for option in reversed(session_options):
        command = option(command)
    return command


@click.group("session")
def session_group() -> None:
    """Stateful sessions: names and files persist from one execution to the next."""


@session_group.command("new")
@_with_session_options
@click.option("--json", "as_json", is_flag=True, help="Print the session as JSON.")
def new(language: str, runtime: str | None, idle_timeout: float, max_lifetime: float, provider: str | None, as_json: bool) -> None:
    """Open a session and print its id (use it with the other subcommands)."""
    client = _client(provider)
    try:
        session = client.session(language, runtime, idle_timeout, max_lifetime)
        session.detach()  # it outlives this command: the backend's timeouts end it if nobody closes it
    finally:
        client.close()
    if as_json:
        print_json({"id": session.id, **session.spec.to_dict()})
    else:
        click.echo(session.id)


@session_group.command("exec")
@click.argument("session_id")
@click.argument("source", required=False, metavar="[FILE|-]")
@click.option("-c", "code", metavar="CODE", help="The code to run.")
@click.option(
    "--arg", "pairs", multiple=True, metavar="NAME=VALUE", help="An argument for main(); VALUE is JSON if it parses, else a string."
)
@click.option("--args-json", metavar="JSON", help="All arguments for main() as one JSON object.")
@click.option("--timeout", type=float, callback=finite_seconds, default=DEFAULT_TIMEOUT, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the whole structured result as JSON (at the end).")
@click.option("--events", "as_events", is_flag=True, help="Print NDJSON: output events as they arrive, then the result.")
def exec_in_session(
    session_id: str,
    source: str | None,
    code: str | None,
    pairs: tuple[str, ...],
    args_json: str | None,
    timeout: float,
    as_json: bool,
    as_events: bool,
) -> None:
    """Run code in session SESSION_ID, printing its output as it comes (as ``sandbox exec`` does)."""
    if as_json and as_events:
        fail("give either --json or --events, not both", EXIT_USAGE)
    text = _read_code(source, code)
    arguments = _collect_arguments(pairs, args_json)
    client, session = _attached(session_id)
    try:
        if as_json:
            result = session.execute(text, arguments=arguments, timeout=timeout)
            print_json(result.to_dict())
        elif as_events:
            result = session.execute(text, arguments=arguments, timeout=timeout, on_output=_print_event)
            _print_line({"type": "result", "result": result.to_dict()})
        else:
            result = _run_live(session, text, arguments=arguments, timeout=timeout)
    finally:
        client.close()
    set_exit_code(_exit_code(result))


@session_group.command("upload")
@click.argument("session_id")
@click.argument("local_file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--as", "name", metavar="PATH", help="Its name in the session's working folder [default: the file's name].")
def upload(session_id: str, local_file: str, name: str | None) -> None:
    """Copy LOCAL_FILE ('-': stdin) into the session's working folder."""
    if local_file == "-":
        if not name:
            fail("give --as PATH when uploading stdin", EXIT_USAGE)
        data = sys.stdin.buffer.read()
    else:
        with open(local_file, "rb") as handle:
            data = handle.read()
    client, session = _attached(session_id)
    try:
        session.upload(name or os.path.basename(local_file), data)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    finally:
        client.close()


@session_group.command("download")
@click.argument("session_id")
@click.argument("path")
@click.option("-o", "--output", metavar="FILE", help="Where to write it ('-': stdout) [default: its name, here].")
def download(session_id: str, path: str, output: str | None) -> None:
    """Copy file PATH of the session's working folder here."""
    client, session = _attached(session_id)
    try:
        data = session.download(path)
    except FileNotFoundError as exc:
        fail(str(exc), 1)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    finally:
        client.close()
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    with open(output or os.path.basename(path), "wb") as handle:
        handle.write(data)


@session_group.command("list")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="Print the files as JSON.")
def list_files(session_id: str, as_json: bool) -> None:
    """List the files of the session's working folder."""
    client, session = _attached(session_id)
    try:
        files = session.list_files()
    finally:
        client.close()
    if as_json:
        print_json([f.to_dict() for f in files])
    else:
        for info in files:
            click.echo(f"{info.size:>12}  {info.path}")


@session_group.command("close")
@click.argument("session_id")
def close(session_id: str) -> None:
    """End the session and free its sandbox (fine when it is already gone)."""
    client, session = _attached(session_id)
    try:
        session.close()
    finally:
        client.close()


def repl_source(entry: str) -> str:
    """The code to run for one REPL entry: a bare expression also prints its value, as Python's prompt does."""
    try:
        tree = ast.parse(entry)
    except SyntaxError:
        return entry  # the session reports the error
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr):
        return f"{REPL_VALUE_NAME} = ({entry.strip()})\nif {REPL_VALUE_NAME} is not None:\n    print(repr({REPL_VALUE_NAME}))\n"
    return entry


def read_entries(stream: Any, interactive: bool) -> Any:
    """Complete entries from ``stream``: a line, or a block ended by an empty line (``codeop`` decides)."""
    lines: list[str] = []
    while True:
        if interactive:
            click.echo("... " if lines else ">>> ", nl=False, err=True)
        line = stream.readline()
        if not line:
            if lines:
                yield "\n".join(lines) + "\n"
            return
        lines.append(line.rstrip("\n"))
        source = "\n".join(lines) + "\n"
        try:
            complete = codeop.compile_command(source, "<repl>", "exec") is not None
        except (SyntaxError, ValueError, OverflowError):
            complete = True  # let the session say what is wrong
        if complete and (len(lines) == 1 or not lines[-1].strip()):
            if source.strip():
                yield source
            lines = []


@click.command("repl")
@_with_session_options
def repl(language: str, runtime: str | None, idle_timeout: float, max_lifetime: float, provider: str | None) -> None:
    """Run each entry typed (or piped) in a session; the session ends with the input (Ctrl-D)."""
    client = _client(provider)
    interactive = sys.stdin.isatty()
    try:
        with client.session(language, runtime, idle_timeout, max_lifetime) as session:
            if interactive:
                click.echo(f"session {session.id} on {session.provider}; Ctrl-D ends it", err=True)
            for entry in read_entries(sys.stdin, interactive):
                _run_live(session, repl_source(entry))
    finally:
        client.close()
    set_exit_code(0)
