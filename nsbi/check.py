"""Check every input of a config at once, before any job runs (``nsbi check CONFIG``).

Each select job checks its own inputs (:func:`nsbi.prep.select_chunks`) and stops at the
first problem, one (sample, variation) job at a time, after the workflow has started.
:func:`check_config` runs the same cheap checks for every sample and every variation of a
config in one go, and returns *every* problem, each naming the config key to fix and the
file:

* every expression (weight, features, selections) parses;
* every input file exists and opens as a ROOT file, holds the tree, and holds every branch
  an expression reads (only the file directory and the branch list are read, no event).

A file read by several variations (weight systematics read the nominal files) is opened once,
for the branches of all of them, and identical messages are reported once (a
:class:`Problem` lists the (sample, variation) jobs it concerns).

With the built-in simulator (``simulation.enabled``) the workflow writes the demo ntuples
itself, so they do not exist before its first run: such a file is a *note*, not a problem.
Relative paths are read from the current directory (the workflow's working directory).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import select_targets
from .io import input_problems
from .prep import parse_job, prep_spec

__all__ = [
    "ERROR",
    "NOTE",
    "InputCheckError",
    "Problem",
    "check_before_run",
    "check_config",
    "format_report",
    "simulator_outputs",
]

ERROR = "error"
NOTE = "note"


@dataclass(frozen=True)
class Problem:
    """One problem (``severity`` :data:`ERROR`) or note (:data:`NOTE`) found by
    :func:`check_config`. ``message`` names the config key and the file; ``jobs`` are the
    (sample, variation) select jobs that would fail on it (for a note: that read the file)."""

    message: str
    jobs: tuple[tuple[str, str], ...] = ()
    severity: str = ERROR

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "message": self.message, "jobs": [list(j) for j in self.jobs]}


def simulator_outputs(cfg: Mapping[str, Any]) -> set[str]:
    """The ntuples the built-in simulator writes (``rules/simulate.smk``): per simulated
    process its nominal and lepton-energy-scale varied files, and the pseudo-data; normalised
    paths. Empty when ``simulation.enabled`` is false."""
    sim = cfg.get("simulation") or {}
    if not sim.get("enabled", False):
        return set()
    from .simulate import DATA_FILE, sample_files

    names = [name for p in sim["processes"] for name in sample_files(p).values()] + [DATA_FILE]
    return {os.path.normpath(f"{sim['output_dir']}/{name}") for name in names}


def _merge_users(into: dict[str, list[tuple[str, str]]], users: Mapping[str, Sequence[tuple[str, str]]]) -> None:
    """Add the (config key, expression) pairs of ``users`` to ``into``, each pair once."""
    for name, pairs in users.items():
        have = into.setdefault(name, [])
        have.extend(p for p in pairs if p not in have)


def _file_problems(file: tuple[str, str, str, str, str], users: Mapping[str, Sequence[tuple[str, str]]]) -> list[str]:
    """:func:`nsbi.io.input_problems` of one ``(path, tree, fmt, files key, tree key)`` for
    the branches of ``users``."""
    path, tree, fmt, files_key, tree_key = file
    return input_problems([path], tree, sorted(users), fmt=fmt, files_key=files_key, tree_key=tree_key, users=users)


def check_config(cfg: Mapping[str, Any], targets: Iterable[tuple[str, str]] | None = None) -> list[Problem]:
    """Every problem with the inputs of a validated config (:func:`nsbi.config.load`): the
    checks of every select job, without running one. Returns the problems (severity
    :data:`ERROR`) first, then the notes (:data:`NOTE`: simulator ntuples not written yet),
    each message once; an empty list means every input is usable.

    ``targets``: the (sample, variation) jobs to check, by default all
    (:func:`nsbi.config.select_targets`).
    """
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (severity, message) -> jobs

    def add(severity: str, message: str, jobs: Iterable[tuple[str, str]]) -> None:
        have = found.setdefault((severity, message), [])
        have.extend(j for j in jobs if j not in have)

    # every (file, tree, keys) once, with the branches of every job that reads it
    groups: dict[tuple[str, str, str, str, str], dict[tuple[str, str], dict[str, list[tuple[str, str]]]]] = {}
    for job in select_targets(cfg) if targets is None else targets:
        spec = prep_spec(cfg, *job)
        parsed = parse_job(spec["weight"], spec["features"], spec["selections"], spec["event_key"], spec["keys"])
        users = parsed.users
        for message in parsed.errors:
            add(ERROR, message, [job])
        keys = spec["keys"]
        for path in spec["files"]:
            groups.setdefault((path, spec["tree"], spec["fmt"], keys["files"], keys["tree"]), {})[job] = users

    simulated = simulator_outputs(cfg)
    for file, by_job in groups.items():
        path, files_key = file[0], file[3]
        if os.path.normpath(path) in simulated and not Path(path).exists():
            add(
                NOTE,
                f"config key '{files_key}': '{path}' does not exist yet: the built-in simulator writes it "
                "(simulation.enabled), its tree and branches are checked once it exists",
                by_job,
            )
            continue
        merged: dict[str, list[tuple[str, str]]] = {}
        for users in by_job.values():
            _merge_users(merged, users)
        for message in _file_problems(file, merged):
            # the jobs that fail on this file: all that read it, unless they read different branches
            distinct = len({frozenset(u) for u in by_job.values()}) > 1
            add(ERROR, message, [job for job, users in by_job.items() if not distinct or _file_problems(file, users)])

    problems = [Problem(m, tuple(jobs), s) for (s, m), jobs in found.items()]
    return [p for p in problems if p.severity == ERROR] + [p for p in problems if p.severity != ERROR]


def _one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.splitlines())


def format_report(problems: Sequence[Problem]) -> str:
    """The problems one per line, numbered, then the notes, then a one-line summary. (A message
    that spans lines, e.g. uproot's reason for not opening a file, is joined into one line.)"""
    errors = [p for p in problems if p.severity == ERROR]
    notes = [p for p in problems if p.severity != ERROR]
    lines = []
    if errors:
        lines.append(f"{len(errors)} problem(s):")
        lines += [f"{i:>3}. {_one_line(p.message)}" for i, p in enumerate(errors, 1)]
    if notes:
        lines.append(f"{len(notes)} note(s), not problems:")
        lines += [f"{i:>3}. {_one_line(p.message)}" for i, p in enumerate(notes, 1)]
    if errors:
        lines.append(f"FAILED: {len(errors)} problem(s) to fix before running the workflow")
    else:
        lines.append("OK: no problem found" + (f" ({len(notes)} note(s))" if notes else ""))
    return "\n".join(lines)


class InputCheckError(RuntimeError):
    """Problems with the inputs of a config (the message lists every one, :func:`format_report`)."""


def check_before_run(cfg: Mapping[str, Any]) -> str:
    """:func:`check_config` when a workflow run starts (the Snakefile's ``onstart`` handler, in
    Snakemake's main process: not in dry runs, not in cluster jobs): returns the report, or
    raises :class:`InputCheckError` with every problem before any job is scheduled. (A rule that
    every select job waited for would order the check first, but an ``ancient`` dependency on it
    hides the select jobs' own rerun triggers from Snakemake, and a plain one reruns every select
    job when any input changes.)"""
    problems = check_config(cfg)
    report = format_report(problems)
    if any(p.severity == ERROR for p in problems):
        raise InputCheckError(f"nsbi input check (nsbi check CONFIG runs it alone):\n{report}")
    return report
