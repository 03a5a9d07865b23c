"""``sandbox check-isolation``: run the isolation profile against a configured provider."""

from __future__ import annotations

import click

from sandbox_core.cli.common import EXIT_NOT_SUCCESSFUL, EXIT_OK, EXIT_USAGE, fail, open_store, print_json, set_exit_code


@click.command("check-isolation")
@click.argument("provider", required=False, metavar="[PROVIDER]")
@click.option("--case", "cases", multiple=True, metavar="NAME", help="Run only this case (repeatable); all cases by default.")
@click.option(
    "--bound",
    "bounds",
    multiple=True,
    metavar="NAME=VALUE",
    help="Change how far an attack goes (repeatable): forks, memory_mib, disk_mib, flood_mib, timeout, linger, attack_timeout.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check_isolation_command(provider: str | None, cases: tuple[str, ...], bounds: tuple[str, ...], as_json: bool) -> None:
    """Attack the sandbox of PROVIDER (the active one by default) and report what it prevents.

    Runs the isolation profile of sandbox_core.testing.isolation with the provider's saved
    config: hidden host files, environment and processes; no network to the host's loopback or
    out of the machine; contained fork, memory, disk and output floods; nothing left for the next
    execution; timeouts that end child processes; result frames that cannot be forged. Every
    attack is bounded, and network probes send nothing off this machine. Exit code 1 when a case
    fails.
    """
    from sandbox_core.client import SandboxClient
    from sandbox_core.testing.isolation import CASES, Bounds, Verdict, check_isolation

    changes = {}
    for pair in bounds:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--bound expects NAME=VALUE, got {pair!r}", EXIT_USAGE)
        changes[key] = value
    try:
        chosen = Bounds().replace(changes)
    except ValueError as exc:
        fail(f"--bound: {exc}", EXIT_USAGE)
    client = SandboxClient(settings=open_store(), provider=provider)
    try:
        name = client.provider
        try:
            reports = check_isolation(client.execute, cases=cases or None, bounds=chosen)
        except ValueError as exc:
            fail(str(exc), EXIT_USAGE)
    finally:
        client.close()
    counts = {verdict: sum(r.verdict is verdict for r in reports) for verdict in Verdict}
    if as_json:
        summaries = {case.name: case.summary for case in CASES}
        print_json(
            {
                "provider": name,
                "passed": counts[Verdict.PASS],
                "failed": counts[Verdict.FAIL],
                "skipped": counts[Verdict.SKIP],
                "cases": [{**r.to_dict(), "summary": summaries[r.case]} for r in reports],
            }
        )
    else:
        width = max(len(r.case) for r in reports)
        for report in reports:
            click.echo(f"{report.verdict.value.upper():<4}  {report.case:<{width}}  {report.evidence}")
        click.echo(
            f"{name}: {counts[Verdict.PASS]} passed, {counts[Verdict.FAIL]} failed, {counts[Verdict.SKIP]} skipped",
            err=True,
        )
    set_exit_code(EXIT_NOT_SUCCESSFUL if counts[Verdict.FAIL] else EXIT_OK)
