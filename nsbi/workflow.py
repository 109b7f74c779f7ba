"""Small helpers for the thin Snakemake scripts (logging to the job's log file, progress bars)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def interactive() -> bool:
    """True when progress bars make sense: stderr is a terminal and ``CI`` is not set."""
    return sys.stderr.isatty() and not os.environ.get("CI")


@contextmanager
def job_logging(smk: Any, name: str = "nsbi") -> Iterator[logging.Logger]:
    """Send ``logging`` output (and uncaught errors) of a Snakemake script to ``smk.log[0]``.

    Errors are logged with their traceback and re-raised, so Snakemake marks the job failed
    and deletes its outputs while the log is kept.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if smk is not None and len(smk.log):
        Path(smk.log[0]).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(smk.log[0], mode="w"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s", handlers=handlers, force=True
    )
    log = logging.getLogger(name)
    try:
        yield log
    except Exception:
        log.exception("job failed")
        raise
