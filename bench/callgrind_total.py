"""The callgrind total of one run of a bench script in its `--run N` mode: what the
one-process path benches (channel_path_bench.py, simulator_path_bench.py, intake_bench.py)
difference over two run lengths so start-up and imports cancel out. Needs valgrind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def callgrind_total(script: str, n: int, out: Path, *args: str) -> int:
    """Instructions of `python script --run n *args` under callgrind (files kept in `out`:
    cg.N, log.N; a vgdb prefix of its own so concurrent callgrind jobs do not meet)."""
    log = out / f"log.{n}"
    subprocess.run(
        [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.{n}",
            f"--vgdb-prefix={out}/vgdb-pipe",
            f"--log-file={log}", sys.executable, script, "--run", str(n), *args,
        ],
        check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONHASHSEED="0"),
    )
    m = re.search(r"Collected : (\d+)", log.read_text())
    if not m:
        raise SystemExit(f"no callgrind total in {log}")
    return int(m.group(1))


def per_message(script: str, small: int, big: int, *args: str, keep: Path | None = None) -> int:
    """Instructions per message of `script`'s workload: the totals of a `small` and a `big`
    run, their difference over big - small (start-up and imports cancel out). `keep`: a
    folder to copy the callgrind files to."""
    with tempfile.TemporaryDirectory() as tmp:
        low = callgrind_total(script, small, Path(tmp), *args)
        high = callgrind_total(script, big, Path(tmp), *args)
        if keep is not None:
            shutil.copytree(tmp, keep, dirs_exist_ok=True)
    return (high - low) // (big - small)
