"""The benchmark scripts start: `make bench` is not run by CI, so a script that cannot even
parse its own command line (a merge once declared `--database` twice in bench/run.py) would
otherwise go unnoticed until someone measures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = ["run.py", "cpu.py", "cpu_data.py", "drivers.py", "live.py", "write_cost.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_parses_its_command_line(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
