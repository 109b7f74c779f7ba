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
from .focused import FocusDensity
from .toys import ToyGenerator

__all__ = ["focus_density", "generator_for", "toy_generator", "linearity_points"]


def generator_for(ws: W.Workspace, model: Any, mc_dataset: str = "asimov") -> ToyGenerator:
    """:class:`nsbi.toys.ToyGenerator` of ``model`` (a model of ``ws``) for toys and Asimov
    datasets: its unbinned channels are reweighted from the events of ``ws``'s dataset
    ``mc_dataset`` (the reference MC reweighted by the model at its nominal point); none are
    needed without unbinned channels."""
    names = [c["name"] for c in model.unbinned_channels]
    if names and mc_dataset not in ws.datasets:
        raise ValueError(
            f"the unbinned channels {names} need MC events for toys and Asimov datasets: the workspace has no "
            f"dataset {mc_dataset!r} (datasets: {ws.datasets})"
        )
    mc = {ch: ws.events(mc_dataset, ch) for ch in names}
    return ToyGenerator(model, mc, mc_at=np.asarray(model.init, float))


def toy_generator(ws_path: str, dataset: str = "observed", mc_dataset: str = "asimov") -> tuple[Any, ToyGenerator]:
    """(model of ``dataset``, generator) for the workspace at ``ws_path``."""
    ws = W.load(ws_path)
    model = ws.model(dataset=dataset)
    return model, generator_for(ws, model, mc_dataset)


def focus_density(model: Any, spec) -> FocusDensity | None:
    """The focus density of the config's ``validation.focus`` (``None`` when not given) over
    the bounds of ``model``'s POI."""
    if not spec:
        return None
    return FocusDensity.from_config(spec, model.bounds[model.poi_index])


def linearity_points(poi: str, values, nuisances=(), poi_init: float = 1.0) -> list[dict[str, float]]:
    """Injected points of the Asimov bias test: each POI value at nominal nuisance
    parameters, then each mapping of ``nuisances`` at ``poi_init``."""
    points = [{poi: float(v)} for v in values]
    points += [{poi: float(poi_init), **{k: float(x) for k, x in n.items()}} for n in nuisances]
    return points
