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


#: test modules whose tests use the finished test-config run (``test_run``)
END_TO_END_MODULES = ("test_network_plots.py", "test_reruns.py", "test_slurm.py", "test_workflow.py")


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1]


def pytest_collection_modifyitems(config, items):
    """The end-to-end modules run first (on one worker under pytest-xdist, see below), so the
    shared workflow run starts at once; a test elsewhere that asks for ``test_run`` is an
    error (end-to-end tests are scheduled as a group). They stay on one worker: the module-edit
    test (tests/test_reruns.py) edits nsbi sources, which a SLURM run beside it would see as
    changed inputs."""
    stray = [i.nodeid for i in items if "test_run" in i.fixturenames and i.path.name not in END_TO_END_MODULES]
    if stray:
        raise pytest.UsageError(f"tests using test_run must live in {END_TO_END_MODULES}: {stray}")
    items.sort(key=lambda item: item.path.name not in END_TO_END_MODULES)  # stable: keeps the order within


def pytest_xdist_make_scheduler(config, log):
    """``make test`` runs two workers: every end-to-end test forms one scope, so the one
    workflow run they share (``test_run``) happens on one worker while the other takes the
    unit tests, each of which is a scope of its own (load-balanced). (pytest-xdist's own
    ``xdist_group``/``--dist loadgroup`` does not group under pytest 9.2, whose node ids it
    can no longer rewrite.)"""
    from xdist.scheduler import LoadScopeScheduling

    class EndToEndScope(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "end-to-end" if _module(nodeid) in END_TO_END_MODULES else nodeid

    return EndToEndScope(config, log)


@pytest.fixture(scope="session")
def test_run(tmp_path_factory):
    """Run the workflow on the test config once (in a scratch working directory).

    ``NSBI_TEST_RUN=DIR`` reuses a finished run of this checkout in DIR instead (to iterate on
    one end-to-end test); the tests only read it or work on copies."""
    cfg = ncfg.load(TEST_CONFIG)
    if os.environ.get("NSBI_TEST_RUN"):
        return Path(os.environ["NSBI_TEST_RUN"]), cfg
    work = tmp_path_factory.mktemp("run")
    snakemake("--cores", "2", "--configfile", str(TEST_CONFIG), "--directory", str(work))
    return work, cfg
