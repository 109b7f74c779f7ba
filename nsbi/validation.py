"""Toy-based validation of a workspace, as used by the workflow's validation rules.

:func:`toy_generator` prepares pseudo-experiments for a workspace: the unbinned channels
are Poisson-resampled from the workspace's Asimov events (the reference MC reweighted by the
model at the nominal point, see :mod:`nsbi.toys`), binned channels drawn from Poisson(ν_b),
auxiliary data from their constraint terms. The functions of :mod:`nsbi.neyman` then give
the Neyman belt, coverage and linearity.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import workspace as W
from .toys import ToyGenerator

__all__ = ["toy_generator", "linearity_points"]


def toy_generator(ws_path: str, dataset: str = "observed", mc_dataset: str = "asimov") -> tuple[Any, ToyGenerator]:
    """(model of ``dataset``, generator) for the workspace at ``ws_path``."""
    ws = W.load(ws_path)
    model = ws.model(dataset=dataset)
    unbinned = [c["name"] for c in ws.spec["channels"] if c["type"] == "unbinned"]
    mc = {ch: ws.events(mc_dataset, ch) for ch in unbinned}
    gen = ToyGenerator(model, mc, mc_at=np.asarray(model.init, float))
    return model, gen


def linearity_points(poi: str, values, nuisances=(), poi_init: float = 1.0) -> list[dict[str, float]]:
    """Injected points of the Asimov bias test: each POI value at nominal nuisance
    parameters, then each mapping of ``nuisances`` at ``poi_init``."""
    points = [{poi: float(v)} for v in values]
    points += [{poi: float(poi_init), **{k: float(x) for k, x in n.items()}} for n in nuisances]
    return points
