"""Shared helpers: running Snakemake in a scratch directory, and one local run of the test config."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nsbi import config as ncfg

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TEST_CONFIG = ROOT / "config" / "test.yaml"


def snakemake(*args, cwd=ROOT, check=True, env=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), *args], cwd=cwd, capture_output=True, text=True, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``make test`` runs ``-n 2 --dist loadgroup``), every test that uses the
    finished test-config run goes to one worker, so the workflow runs once per session while the
    other worker takes the unit tests."""
    for item in items:
        if "test_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("workflow"))


@pytest.fixture(scope="session")
def test_run(tmp_path_factory):
    """Run the workflow on the test config once (in a scratch working directory)."""
    work = tmp_path_factory.mktemp("run")
    snakemake("--cores", "2", "--configfile", str(ROOT / "config/test.yaml"), "--directory", str(work))
    return work, ncfg.load(ROOT / "config/test.yaml")
