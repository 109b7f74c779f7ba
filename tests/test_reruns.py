"""Snakemake reruns exactly what a change invalidates (params, inputs, nsbi code), and an
interrupted run resumes with only the incomplete jobs and gives identical results."""

import json
import modulefinder
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SNAKEMAKE, TEST_CONFIG, job_counts, snakemake

from nsbi import config as ncfg

pytestmark = pytest.mark.slow

PREP_RULES = {"simulate_sample", "simulate_data", "select", "prep", "train_region", "prep_summary", "plot_datamc"}


def test_training_setting_change_reruns_training_and_downstream_only(test_run, tmp_path):
    work, _ = test_run
    changed = tmp_path / "changed.yaml"
    changed.write_text(TEST_CONFIG.read_text().replace("learning_rate: 0.001", "learning_rate: 0.002"))
    proc = snakemake("-n", "--configfile", str(changed), "--directory", str(work))
    out = proc.stdout + proc.stderr
    counts = job_counts(out)
    cfg = ncfg.load(TEST_CONFIG)
    assert counts["train_ratio"] == 4 * cfg["training"]["members"]
    assert counts["train_syst"] > 0 and counts["evaluate_target"] > 0 and counts["workspace_nsbi"] == 1
    assert counts["fit"] == 2  # the NSBI workspace on both datasets; the histogram fits stay
    assert not PREP_RULES & set(counts), f"data preparation would rerun: {counts}"
    assert "workspace_hist" not in counts
    assert "Params have changed since last execution" in out


def test_label_change_reruns_plots_only(test_run, tmp_path):
    """Plot labels (a sample's label, morphing.poi_label) change no number: no training,
    workspace or toy job reruns, only the jobs that draw them (the fit and validation summary
    jobs write their plots themselves)."""
    work, _ = test_run
    text = TEST_CONFIG.read_text()
    changed = tmp_path / "labels.yaml"
    edited = text.replace('label: "qq→ZZ"', 'label: "qq → ZZ (background)"').replace(
        "  poi: mu\n", "  poi: mu\n  poi_label: '$\\mu_{\\mathrm{off}}$'\n"
    )
    assert edited.count("poi_label") == 1 and "qq → ZZ (background)" in edited
    changed.write_text(edited)
    proc = snakemake("-n", "--configfile", str(changed), "--directory", str(work))
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts, "a label edit must rerun the plots that show it"
    numeric = {"train_ratio", "train_syst", "evaluate_target", "workspace_nsbi", "workspace_hist", "workspace_oracle"}
    numeric |= {"pyhf_check", "neyman_chunk", "coverage_chunk"}
    assert not numeric & set(counts), f"a label edit reruns numeric jobs: {counts}"
    assert not PREP_RULES - {"plot_datamc"} & set(counts), counts


# --- editing nsbi code reruns exactly the rules whose scripts import it
#
# The expected dependencies are computed here independently of nsbi.codedeps (which the
# rules use): the union of (a) the standard library's ModuleFinder, a static analysis of
# the scripts' bytecode that also follows imports inside functions, and (b) the nsbi modules
# really imported when each script runs up to its first use of the snakemake object.

_PROBE = r"""
import json, sys

class Stop(Exception):
    pass

class Stub:  # stands in for the snakemake object: the script stops at its first use
    def __getattr__(self, name):
        raise Stop(name)

out = {}
for script in sys.argv[1:]:
    for name in [m for m in sys.modules if m == "nsbi" or m.startswith("nsbi.")]:
        del sys.modules[name]
    code = compile(open(script).read(), script, "exec")
    try:
        exec(code, {"__name__": "__main__", "snakemake": Stub()})
    except Stop:
        pass
    out[script] = sorted(
        m.__file__ for n, m in sys.modules.items() if (n == "nsbi" or n.startswith("nsbi.")) and m.__file__
    )
print(json.dumps(out))
"""


def rule_scripts() -> dict[str, str]:
    """rule name -> its script (read from rules/*.smk)."""
    out = {}
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        blocks = re.split(r"^\s*(?:local)?rule (\w+):", smk.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            m = re.search(r'script:\s*"\.\./(scripts/\w+\.py)"', body)
            if m:
                out[name] = m.group(1)
    return out


def imported_files(scripts) -> dict[str, set[str]]:
    """script -> nsbi source files it imports (ModuleFinder + runtime imports)."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *(str(ROOT / s) for s in scripts)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    runtime = json.loads(proc.stdout.strip().splitlines()[-1])
    out = {}
    for s in scripts:
        finder = modulefinder.ModuleFinder(path=[str(ROOT)])
        finder.run_script(str(ROOT / s))
        static = {m.__file__ for n, m in finder.modules.items() if n.split(".")[0] == "nsbi"}
        out[s] = {str(Path(f).resolve()) for f in static | set(runtime[str(ROOT / s)])}
    return out


def planned_jobs(output: str) -> list[tuple[str, str]]:
    """(rule, reason) of every job in a dry run's output."""
    jobs = re.findall(r"^(?:local)?rule (\w+):\n((?:[ \t]+.*\n?)*)", output, flags=re.M)
    out = []
    for rule, body in jobs:
        m = re.search(r"^\s+reason: (.*)$", body, flags=re.M)
        out.append((rule, m.group(1) if m else ""))
    return out


def _replace_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: tests running in parallel (``make test`` uses
    two workers) import these modules and must never see a half-written file."""
    tmp = path.with_name(f".{path.name}.edit")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def edit_and_plan(module: Path, work: Path) -> subprocess.CompletedProcess:
    """Dry run with a comment line appended to ``module`` (restored afterwards, mtime too)."""
    suffix = b"\n# edited by tests/test_reruns.py\n"
    original = module.read_bytes()
    st = os.stat(module)
    _replace_bytes(module, original + suffix)
    try:
        return snakemake("-n", "--configfile", str(TEST_CONFIG), "--directory", str(work))
    finally:
        current = module.read_bytes()
        if current.endswith(suffix):  # (leave the file alone if someone else rewrote it meanwhile)
            _replace_bytes(module, current[: -len(suffix)])
        if module.read_bytes() == original:
            os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_editing_an_nsbi_module_reruns_exactly_the_rules_importing_it(test_run, tmp_path):
    """An nsbi source file gets a comment line appended (and is restored, mtime too): the
    dry run on a copy of the finished test run must plan every job of the rules whose
    scripts import that file, directly or indirectly, with the edited file named as the
    reason (or, for a job that also consumes another planned job's output, that reason),
    and nothing else except jobs downstream of them ("Input files updated by another
    job", ``all`` included): no job of another rule names the edited file. A file no
    script imports plans nothing.

    To stay affordable (one dry run of a few seconds per edit, ~60 files), the files under
    nsbi/ are grouped by their expected rule set (computed independently of nsbi.codedeps,
    see above) and the first file of each group is edited: a file alone in its group is
    always edited, and every distinct expected rule set (about 25) is checked once.
    Touching a module without changing it reruns nothing (checksums are recorded)."""
    work, _ = test_run
    copy = tmp_path / "run"
    shutil.copytree(work, copy, symlinks=True)

    # rules with jobs in the test run, and their job counts
    proc = snakemake("-n", "--forceall", "--configfile", str(TEST_CONFIG), "--directory", str(copy))
    full = job_counts(proc.stdout + proc.stderr)
    scripts = {r: s for r, s in rule_scripts().items() if r in full}
    deps = imported_files(set(scripts.values()))
    assert str(ROOT / "nsbi" / "fit.py") in deps["scripts/fit.py"]  # sanity of the probe

    groups: dict[frozenset, list[Path]] = {}
    for module in sorted((ROOT / "nsbi").rglob("*.py")):
        expected = frozenset(r for r, s in scripts.items() if str(module.resolve()) in deps[s])
        groups.setdefault(expected, []).append(module)
    assert len(groups) > 5, groups

    # a touched but unchanged module reruns nothing
    module = ROOT / "nsbi" / "fit.py"
    st = os.stat(module)
    try:
        os.utime(module, (time.time(), time.time()))
        touched = snakemake("-n", "--configfile", str(TEST_CONFIG), "--directory", str(copy))
    finally:
        os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert "Nothing to be done" in touched.stdout + touched.stderr

    failures = []
    for expected, members in groups.items():
        module = members[0]
        name = str(module.relative_to(ROOT))
        proc = edit_and_plan(module, copy)
        out = proc.stdout + proc.stderr
        if not expected:
            if "Nothing to be done" not in out:
                failures.append(f"{name}: imported by no script, but planned {job_counts(out)}")
            continue
        # a job that also depends on another planned job may be listed with that reason only
        edited = re.compile(rf"Updated input files: [^;]*{re.escape(str(module))}(?:[,;]|$)")
        downstream = re.compile(r"^Input files updated by another job: [^;]*$")
        jobs = planned_jobs(out)
        wrong = {
            (rule, reason[:100])
            for rule, reason in jobs
            if not (downstream.match(reason) or (rule in expected and edited.search(reason)))
        }
        direct = {rule for rule, reason in jobs if edited.search(reason)}
        counts = job_counts(out)
        incomplete = {r: (counts.get(r, 0), full[r]) for r in expected if counts.get(r, 0) != full[r]}
        if wrong or incomplete or not direct or "all" not in counts:
            failures.append(
                f"{name} (and {len(members) - 1} more with the same rules): expected {sorted(expected)}; "
                f"jobs with a wrong reason {sorted(wrong)}; planned/all jobs {incomplete}; planned {counts}"
            )
    assert not failures, "\n".join(failures)


def _default_sigint():
    """In the child before exec: Ctrl-C handled as in a terminal. A process inherits an ignored or
    blocked SIGINT from its parent (here a pytest-xdist worker, where an earlier test's library
    may have left it so), and Python then installs no KeyboardInterrupt handler: in CI the run
    ignored every SIGINT and finished all 39 jobs with exit code 0."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_interrupted_run_resumes_with_incomplete_jobs_only(test_run, tmp_path):
    work, cfg = test_run
    resumed = tmp_path / "resumed"
    shutil.copytree(work, resumed, symlinks=True)
    res = resumed / ncfg.results_dir(cfg)
    # retrain the ratio ensembles (--forcerun) and interrupt the run during training
    cmd = [
        *SNAKEMAKE,
        "-s",
        str(ROOT / "Snakefile"),
        "--configfile",
        str(TEST_CONFIG),
        "--directory",
        str(resumed),
        "--cores",
        "1",
        "--forcerun",
        "train_ratio",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_default_sigint
    )
    log = ""
    for line in proc.stdout:  # interrupt as soon as the first training job has started
        log += line
        if "rule train_ratio" in line:
            time.sleep(1.0)
            proc.send_signal(signal.SIGINT)
            break
    # Ctrl-C once more if the run goes on, as a user would press it again
    for _ in range(20):
        try:
            proc.wait(timeout=3)
            break
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
    log += proc.stdout.read()
    proc.wait(timeout=120)
    assert "train_ratio" in log and proc.returncode != 0, log[-2000:]
    # resume up to the fits compared below (the toys downstream of training are not needed here)
    fits = [f"{ncfg.results_dir(cfg)}/fit/{k}/{d}/fit.json" for k in ("nsbi", "hist") for d in ("asimov", "observed")]
    again = snakemake(
        "--configfile", str(TEST_CONFIG), "--directory", str(resumed), "--cores", "2", "--rerun-incomplete", *fits
    )
    counts = job_counts(again.stdout + again.stderr)
    # only the interrupted training job (and what depends on it) runs again
    assert counts.get("fit") == 2 and counts.get("workspace_nsbi") == 1, counts
    assert 1 <= counts.get("train_ratio", 0) <= 2, counts
    assert "train_syst" not in counts and not PREP_RULES & set(counts), counts
    for kind in ("nsbi", "hist"):
        for dataset in ("asimov", "observed"):
            a = json.loads((work / ncfg.results_dir(cfg) / f"fit/{kind}/{dataset}/fit.json").read_text())
            b = json.loads((res / f"fit/{kind}/{dataset}/fit.json").read_text())
            assert a["values"] == b["values"] and a["twice_nll"] == b["twice_nll"], (kind, dataset)
