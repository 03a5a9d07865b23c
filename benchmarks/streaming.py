"""Benchmark of output streaming on the self-managed gVisor provider, measured side by side in one run.

    uv run python benchmarks/streaming.py [--rounds 30] [--lines 20]

(as root, with runsc installed). It starts a real ``sandbox-executor`` (bare interpreters, as
``benchmarks/selfmanaged.py`` does) and measures, through the whole stack (``SandboxClient`` →
``self_managed`` provider → HTTP → executor → gVisor sandbox):

- event latency: code prints its own clock (``time.time()``, flushed) every 50 ms; each line's
  latency is the time the ``on_output`` callback got it minus the time printed. The sandbox's
  clock is the host's (gVisor reads the host's time), so both ends use one clock;
- the latency of one trivial execution (``print(42)``) without streaming and with an
  ``on_output`` callback, interleaved round by round, and their ratio: what asking for events
  costs a short execution, and a check that the plain call is not slowed by the streaming path
  beside it.

Results go to ``benchmarks/results/streaming.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

from selfmanaged import RESULTS, Executor, summary

from sandbox_core import OutputEvent, SandboxClient

TICKS = "import time\nfor _ in range({lines}):\n    print(f'{{time.time():.6f}}', flush=True)\n    time.sleep(0.05)\n"
TRIVIAL = "print(42)"


def event_latencies(client: SandboxClient, lines: int) -> list[float]:
    """Seconds from each printed line to its ``on_output`` call, for one execution."""
    latencies: list[float] = []

    def received(event: OutputEvent) -> None:
        now = time.time()
        latencies.extend(now - float(stamp) for stamp in event.text.split())

    result = client.execute(TICKS.format(lines=lines), timeout=60, on_output=received)
    assert result.ok and len(latencies) == lines, (result, len(latencies))
    return latencies


def call_latency(client: SandboxClient, *, streaming: bool) -> float:
    events: list[OutputEvent] = []
    started = time.perf_counter()
    result = client.execute(TRIVIAL, timeout=30, on_output=events.append if streaming else None)
    elapsed = time.perf_counter() - started
    assert result.ok and result.stdout == "42\n", result
    assert not streaming or "".join(e.text for e in events) == "42\n", events
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="executions per measurement")
    parser.add_argument("--lines", type=int, default=20, help="lines printed per execution for the event latency")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: runsc needs it")
    args.output.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    executor = Executor(workdir, "")
    try:
        health = executor.health()
        config = {"endpoints": [executor.url], "token": executor.token}
        with closing(SandboxClient(provider="self_managed", config=config)) as client:
            for _ in range(3):  # warm-up: connections, lazy imports
                call_latency(client, streaming=False)
                call_latency(client, streaming=True)
                executor.settle()
            events: list[float] = []
            plain: list[float] = []
            streamed: list[float] = []
            for _ in range(args.rounds):
                executor.settle()
                plain.append(call_latency(client, streaming=False))
                executor.settle()
                streamed.append(call_latency(client, streaming=True))
                executor.settle()
                events.extend(event_latencies(client, args.lines))
    finally:
        executor.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    plain_summary, streamed_summary = summary(plain), summary(streamed)
    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "runsc": health["runtime"]["version"],
            "platform": health["runtime"]["platform"],
            "date": time.strftime("%Y-%m-%d"),
        },
        "config": {"rounds": args.rounds, "lines_per_execution": args.lines, "line_interval_ms": 50, "trivial_code": TRIVIAL},
        "event_latency_print_to_callback": summary(events),
        "trivial_execution": {"without_streaming": plain_summary, "with_on_output": streamed_summary},
        "ratios": {
            "with_on_output_p50_over_without_p50": round(streamed_summary["p50_ms"] / plain_summary["p50_ms"], 2),
        },
    }
    (args.output / "streaming.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
