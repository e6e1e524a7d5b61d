"""Instructions per message of each process on the batch workload, counted by callgrind.

    .venv/bin/python bench/instructions_bench.py [--count 5000] [--tree DIR] [--json]

Wall-clock rates on this shared 2-vCPU machine move by 20-30 % from one minute to the next;
instruction counts do not: the same code and workload give the same count to ~0.5 % for the
gateway (its batches depend a little on timing) and ~1 % for the store writer, whatever else
runs. So changes to per-message work are compared here, and rates in gateway_bench.py.

What runs: the simulator, the gateway (`smpp-gateway run`, writer process) and the batch
workload of bench/gateway_bench.py (100 recipients per request, 50 clients), as there, but
with the measured process under `valgrind --tool=callgrind` (~50x slower): first the
gateway together with its store writer process, then the simulator. Counting starts after
a 2,000-message warm-up (`callgrind_control -z`) and stops when the last receipt of
`--count` messages is stored (`callgrind_control -d`), both sent to this run's processes
alone (a vgdb prefix of its own: benches running at once do not disturb each other). Reported: instructions per message
of the gateway, the writer process and the simulator. The gateway runs slower than its
peers under valgrind, so its batches are larger than in a real run: per-batch costs weigh
less here; the counts compare code, not configurations.

`--keep DIR` copies the callgrind files to DIR, for `callgrind_annotate DIR/<process>.<pid>.1`.
`--tree DIR` runs the gateway and simulator code of another checkout (e.g. a `git worktree`
of an older commit) with this file's workload: the way to compare two commits.
Needs valgrind (Debian package `valgrind`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import gateway_bench as gb  # noqa: E402

WARMUP = 2_000


def _callgrind(out: Path, name: str, children: bool = False) -> list[str]:
    return [
        "valgrind", "--tool=callgrind", f"--trace-children={'yes' if children else 'no'}",
        f"--callgrind-out-file={out}/{name}.%p", f"--log-file={out}/{name}.%p.log",
        f"--vgdb-prefix={out}/vgdb-pipe",
    ]


@contextlib.contextmanager
def _simulator(tree: Path, prefix: list[str]) -> Iterator[tuple[int, int]]:
    cmd = [
        *prefix, sys.executable, "-m", "simulators.smsc", "--port", "0",
        "--log-level", "warning", "--enquire-link-interval", "0",
    ]
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE, text=True)
    try:
        m = re.search(r":(\d+)", proc.stdout.readline())
        if not m:
            raise RuntimeError("the simulator did not start")
        yield int(m.group(1)), proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(120)


async def _ready(admin: int) -> None:
    with trio.fail_after(300):
        while True:
            with contextlib.suppress(OSError):
                client = await gb.HttpClient.connect(admin)
                status, _ = await client.request("GET", "/readyz")
                await client.stream.aclose()
                if status == 200:
                    return
            await trio.sleep(0.5)


def _tree_pids(root: int) -> list[int]:
    """`root` and its descendants (the gateway's writer process), from /proc."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return pids


def _control(option: str, pids: list[int], out: Path) -> None:
    """callgrind_control for these processes only. Without pids it acts on every callgrind
    run it finds, so two benches at once zeroed and dumped each other's counts; and our runs
    use a vgdb prefix of their own (_callgrind), which another bench's callgrind_control
    does not look in."""
    for pid in pids:
        subprocess.run(
            ["callgrind_control", f"--vgdb-prefix={out}/vgdb-pipe", option, str(pid)],
            capture_output=True, check=False,
        )


def _run(tree: Path, count: int, measure: str, out: Path) -> bool:
    """One run with `measure` ("gateway" or "simulator") under callgrind; True if every
    message was delivered."""
    sim_prefix = _callgrind(out, "simulator") if measure == "simulator" else []
    gw_prefix = _callgrind(out, "gateway", children=True) if measure == "gateway" else []
    with _simulator(tree, sim_prefix) as (smsc_port, sim_pid), tempfile.TemporaryDirectory() as tmp:
        api, admin = gb.free_port(), gb.free_port()
        cfg = gb.gateway_config(Path(tmp), smsc_port, api, admin, 2, 64, "builtin")
        env = dict(os.environ, PYTHONGC="1", PYTHONPATH=str(tree))
        gw = subprocess.Popen(
            [*gw_prefix, sys.executable, "-m", "gateway.cli", "run", "--config", str(cfg)],
            cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            trio.run(_ready, admin)
            trio.run(gb.run_workload, api, admin, WARMUP, 10, 100, 0, 600.0, False)
            measured = _tree_pids(sim_pid if measure == "simulator" else gw.pid)
            _control("-z", measured, out)
            r = trio.run(gb.run_workload, api, admin, count, 50, 100, 10**6, 1800.0, False)
            _control("-d", measured, out)
        finally:
            gw.send_signal(signal.SIGTERM)
            gw.wait(120)
    return bool(r["complete"])


def _counts(out: Path, count: int) -> dict[str, int]:
    """Instructions per message by process, from the dumps taken after the warm-up (the
    `.1` parts: callgrind_control -d after -z)."""
    found: dict[str, int] = {}
    for f in sorted(out.glob("*.1")):
        text = f.read_text(errors="replace")
        cmd = re.search(r"^cmd:\s*(.*)$", text, re.M)
        total = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
        if not cmd or not total:
            continue
        line = cmd.group(1)
        name = (
            "writer_process" if "sqlite_writer" in line
            else "gateway" if "gateway.cli" in line
            else "simulator" if "simulators.smsc" in line
            else None
        )
        if name:
            found[name] = round(int(total.group(1)) / count)
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=5_000, help="messages counted (after the warm-up)")
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout whose code runs")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", type=Path, help="copy the callgrind files here (for callgrind_annotate)")
    a = ap.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="callgrind-") as d:
        out = Path(d)
        complete = _run(a.tree.resolve(), a.count, "gateway", out)
        complete = _run(a.tree.resolve(), a.count, "simulator", out) and complete
        counts = _counts(out, a.count)
        if a.keep:
            shutil.copytree(out, a.keep, dirs_exist_ok=True)
    result = {"tree": str(a.tree.resolve()), "count": a.count, "complete": complete, "instructions_per_message": counts}
    if a.json:
        print(json.dumps(result))
    else:
        print(
            f"{a.count} messages (batch workload), instructions per message: "
            + ", ".join(f"{k} {v:,}" for k, v in counts.items())
            + ("" if complete else " (INCOMPLETE)")
        )
    return 0 if complete and len(counts) == 3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
