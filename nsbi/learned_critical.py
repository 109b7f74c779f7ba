"""Learned critical values: the Neyman construction by quantile regression over the POI range.

A grid construction (:mod:`nsbi.neyman`) spends hundreds of toys at every grid point and gives
the critical value ``c_CL(mu)`` only there. Here toys are spread over the whole range instead, a
few per POI value (:func:`sample_points`, :func:`toys_over_range`: each toy is generated at its
own ``mu`` and its ``t_mu`` is taken at that ``mu``), and ``c_CL(mu)`` is learned from the pairs
``(mu_i, t_i)`` by quantile regression (likelihood-free frequentist inference, LF2I: Dalmasso,
Masserano, Izbicki, Lee).

The regressor (:class:`QuantileRegressor`) is a small network trained with Lightning on the
pinball loss of every CL at once. It is smooth in ``mu`` (a grid of gradient-boosted trees would
be piecewise constant, with steps wherever the trees split), its quantiles never cross (the
network gives the lowest CL's value and non-negative increments), and it is deterministic for a
given seed on a CPU. Its inputs are the POI values scaled to [-1, 1] over the configured range.

An **audit** always follows: independent toys at points not used for training
(:func:`audit`); the fraction of them with ``t <= c_CL(mu)`` must be the CL within its binomial
error, per audit point; :func:`audit` reports each point and whether every one is within the
configured tolerance.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .neyman import binomial_coverage, cl_key

_log = logging.getLogger(__name__)

__all__ = [
    "QuantileRegressor",
    "audit",
    "as_points",
    "generation_points",
    "learned_construction",
    "learned_region",
    "pinball_loss",
    "sample_box",
    "sample_points",
    "toys_over_range",
]


def as_points(poi, dim: int) -> np.ndarray:
    """POI values as an (N, ``dim``) array: shape (N,) is read as N values of one POI."""
    poi = np.asarray(poi, float)
    poi = poi[:, None] if poi.ndim == 1 and dim == 1 else poi
    if poi.ndim != 2 or poi.shape[1] != dim:
        raise ValueError(f"expected POI values of {dim} parameter(s), got an array of shape {poi.shape}")
    return poi


def sample_points(low: float, high: float, n: int, seed) -> np.ndarray:
    """``n`` POI values drawn uniformly in ``[low, high]`` (seeded; sorted)."""
    if not low < high:
        raise ValueError(f"the POI range [{low}, {high}] is empty")
    rng = np.random.default_rng(seed)
    return np.sort(rng.uniform(float(low), float(high), int(n)))


def sample_box(low: Sequence[float], high: Sequence[float], n: int, seed) -> np.ndarray:
    """``n`` points drawn uniformly in the box ``[low, high]`` (one entry per POI; seeded), (n, d)."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    if low.shape != high.shape or not np.all(low < high):
        raise ValueError(f"the box [{low.tolist()}, {high.tolist()}] is empty")
    return np.random.default_rng(seed).uniform(low, high, (int(n), len(low)))


def generation_points(
    gen, points, nuisances="nominal", nodes: int | None = None, pois: Sequence[str] | None = None
) -> np.ndarray:
    """The parameter vector each toy is generated at, one row per POI value of ``points``
    ((N,), or (N, d) for the POIs ``pois``): the other parameters ``"nominal"``, from a
    mapping, or ``"profiled"`` -- the conditional MLE on the data
    (:func:`nsbi.neyman.theta_at`) at ``nodes`` values per POI spanning ``points`` (default
    21, or 6 per POI for several), interpolated linearly (one fit per node instead of one per
    toy)."""
    from scipy.interpolate import RegularGridInterpolator

    from .neyman import theta_at

    model = gen.model
    names = list(pois) if pois else [model.par_names[model.poi_index]]
    pts = np.asarray(points, float).reshape(len(points), -1)
    if pts.shape[1] != len(names):
        raise ValueError(f"points have {pts.shape[1]} coordinates for the POIs {names}")
    idx = [model.index(n) for n in names]

    def point(v) -> dict[str, float] | float:
        return float(v[0]) if not pois else {n: float(x) for n, x in zip(names, v)}

    if nuisances != "profiled":
        rows = np.tile(theta_at(gen, point(pts[0]), nuisances), (len(pts), 1))
    else:
        n = max(2, int(nodes or (21 if len(names) == 1 else 6)))
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        hi = np.where(hi > lo, hi, lo + 1.0)  # all points at one value: any second node will do
        axes = [np.linspace(lo[k], hi[k], n) for k in range(len(names))]
        mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(names))
        at = np.array([theta_at(gen, point(v), "profiled") for v in mesh]).reshape(*([n] * len(names)), -1)
        rows = RegularGridInterpolator(axes, at)(pts)
    rows[:, idx] = pts
    return rows


def toys_over_range(
    gen,
    points: Sequence[float],
    seed: int,
    batch: int = 0,
    nuisances: str | Mapping[str, float] = "nominal",
    batch_size: int | None = None,
    kind: str = "t",
    focus=None,
    pois: Sequence[str] | None = None,
) -> dict[str, Any]:
    """One toy at each POI value of ``points``, generated at :func:`generation_points`, and the
    ``t_mu`` of each at its own POI (``kind``: ``"t"``, or ``"focused"`` with the ``focus``
    density of :mod:`nsbi.focused`); returns ``{"poi", "t", "kind", "n_fallback", "n_failed"}``.
    The i-th toy is the first toy of :func:`nsbi.neyman.compute_chunk` at the same point with
    seed ``(seed, i, batch)``. Several POIs: ``points`` (N, d) for the POIs ``pois``, each toy
    tested at its own point (all of them fixed; ``kind="t"``)."""
    from .neyman import toy_t
    from .toys import ToySet

    points = np.asarray(points, float)
    thetas = generation_points(gen, points, nuisances, pois=pois)
    # one summary instead of a warning per generation point about MC events of non-positive density
    quiet = _Quiet("model density not positive")
    toys_log = logging.getLogger("nsbi.toys")
    toys_log.addFilter(quiet)
    try:
        sets = [gen.generate(th, 1, seed=(int(seed), i, int(batch))) for i, th in enumerate(thetas)]
    finally:
        toys_log.removeFilter(quiet)
    worst = max((max(s.meta.get("nonpositive_events", [0]) or [0]) for s in sets), default=0)
    if quiet.n:
        _log.warning(
            "model density not positive for up to %d MC events at %d of %d generation points; they get "
            "expected weight 0 (nsbi.toys)",
            worst,
            quiet.n,
            len(sets),
        )
    # one padded event count per unbinned channel (index 0 with count 0, as generate pads), so
    # that the toys of all points form one batch
    pad = [max(s.idx[j].shape[1] for s in sets) for j in range(len(sets[0].idx))]
    sets = [
        replace(
            s,
            idx=[np.pad(a, ((0, 0), (0, n - a.shape[1]))) for a, n in zip(s.idx, pad)],
            k=[np.pad(a, ((0, 0), (0, n - a.shape[1]))) for a, n in zip(s.k, pad)],
        )
        for s in sets
    ]
    res = toy_t(gen, ToySet.concatenate(sets), None, kind=kind, batch_size=batch_size, focus=focus, pois=pois)
    return {
        "poi": points.tolist(),
        **({"pois": list(pois)} if pois else {}),
        "kind": kind,
        "t": np.asarray(res["t"], float).tolist(),
        "n_fallback": int(res["n_fallback"]),
        "n_failed": int(res["n_failed"]),
    }


class _Quiet(logging.Filter):
    """Drops (and counts) the log records whose message starts with ``text``."""

    def __init__(self, text: str):
        super().__init__()
        self.text, self.n = text, 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.text in str(record.msg):
            self.n += 1
            return False
        return True


def pinball_loss(pred, target, quantiles):
    """Mean pinball (quantile) loss of predictions ``pred`` (N, K) for quantiles ``quantiles``
    (K,) of ``target`` (N,): max(tau (y - q), (tau - 1)(y - q)), summed over K."""
    import torch

    diff = target[:, None] - pred
    tau = torch.as_tensor(quantiles, dtype=pred.dtype)[None, :]
    return torch.maximum(tau * diff, (tau - 1.0) * diff).mean(dim=0).sum()


class QuantileRegressor:
    """c_CL(mu) for several CLs by quantile regression (see the module docstring).

    One POI: ``low``/``high`` numbers and POI values of shape (N,); several POIs (e.g. the 2-D
    construction): ``low``/``high`` sequences (one entry per POI, the box the toys were spread
    over) and POI values of shape (N, d). ``settings``: ``hidden`` (layer widths, default
    [32, 32]), ``max_epochs`` (default 400), ``learning_rate`` (default 0.01),
    ``validation_fraction`` (default 0.2; the weights of the epoch with the lowest validation
    loss are kept), ``patience`` (default 40)."""

    def __init__(self, cls: Sequence[float], low, high, seed: int = 0, settings: Mapping | None = None):
        self.cls = [float(c) for c in cls]
        if not self.cls or any(not 0 < c < 1 for c in self.cls) or sorted(self.cls) != self.cls:
            raise ValueError(f"confidence levels must increase within (0, 1), got {list(cls)}")
        self.low, self.high = np.atleast_1d(np.asarray(low, float)), np.atleast_1d(np.asarray(high, float))
        if self.low.shape != self.high.shape or self.low.ndim != 1 or not np.all(self.low < self.high):
            raise ValueError(f"the POI range [{low}, {high}] is empty")
        self.dim, self.seed = len(self.low), int(seed)
        s = {"hidden": [32, 32], "max_epochs": 400, "learning_rate": 0.01, "validation_fraction": 0.2, "patience": 40}
        s.update(dict(settings or {}))
        self.settings = s
        self.net = None
        self.history: dict[str, Any] = {}

    def _x(self, poi):
        return 2.0 * (as_points(poi, self.dim) - self.low) / (self.high - self.low) - 1.0

    def _build(self):
        import torch
        from torch import nn

        layers, n_in = [], self.dim
        for width in self.settings["hidden"]:
            layers += [nn.Linear(n_in, int(width)), nn.SiLU()]
            n_in = int(width)
        layers.append(nn.Linear(n_in, len(self.cls)))
        body = nn.Sequential(*layers)

        class Monotone(nn.Module):
            """lowest CL's value, then non-negative increments: the quantiles never cross"""

            def __init__(self):
                super().__init__()
                self.body = body

            def forward(self, x):
                z = self.body(x)
                return torch.cumsum(torch.cat([z[:, :1], nn.functional.softplus(z[:, 1:])], dim=1), dim=1)

        return Monotone()

    def fit(self, poi: Sequence[float], t: Sequence[float]) -> QuantileRegressor:
        """Train on the toys' ``(poi, t)`` pairs."""
        import lightning as L
        import torch

        poi, t = np.asarray(poi, float), np.asarray(t, float)
        if len(as_points(poi, self.dim)) != len(t) or t.ndim != 1 or len(t) < 10:
            raise ValueError(f"need at least 10 (poi, t) pairs of equal length, got {poi.shape} and {t.shape}")
        if not np.all(np.isfinite(t)):
            raise ValueError("t contains non-finite values")
        L.seed_everything(self.seed, verbose=False)
        rng = np.random.default_rng(self.seed)
        perm = rng.permutation(len(t))
        n_val = max(1, round(float(self.settings["validation_fraction"]) * len(t)))
        va, tr = perm[:n_val], perm[n_val:]
        x = torch.as_tensor(self._x(poi), dtype=torch.float32)
        y = torch.as_tensor(t, dtype=torch.float32)
        net = self._build()
        # start at the data's quantiles: the constant solution
        with torch.no_grad():
            last = net.body[-1]
            last.weight.zero_()
            q = np.quantile(t[tr], self.cls)
            inc = np.maximum(np.diff(q), 1e-3)
            last.bias.copy_(torch.as_tensor([q[0], *np.log(np.expm1(inc))], dtype=torch.float32))
        cls_, lr = self.cls, float(self.settings["learning_rate"])

        class Module(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = net

            def training_step(self, batch, _):
                loss = pinball_loss(self.net(batch[0]), batch[1], cls_)
                self.log("train_loss", loss, on_epoch=True, on_step=False)
                return loss

            def validation_step(self, batch, _):
                self.log("val_loss", pinball_loss(self.net(batch[0]), batch[1], cls_), on_epoch=True)

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=lr)

        best: dict[str, Any] = {"loss": np.inf, "state": None, "epoch": -1}

        class KeepBest(L.Callback):
            def on_validation_epoch_end(self, trainer, module):
                v = float(trainer.callback_metrics["val_loss"])
                if v < best["loss"]:
                    best.update(loss=v, epoch=int(trainer.current_epoch))
                    best["state"] = {k: p.detach().clone() for k, p in module.net.state_dict().items()}

        from lightning.pytorch.callbacks import EarlyStopping
        from torch.utils.data import DataLoader, TensorDataset

        def loader(idx):
            return DataLoader(TensorDataset(x[idx], y[idx]), batch_size=len(idx), shuffle=False)

        trainer = L.Trainer(
            max_epochs=int(self.settings["max_epochs"]),
            accelerator="auto",
            devices=1,
            deterministic=True,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[KeepBest(), EarlyStopping("val_loss", patience=int(self.settings["patience"]))],
        )
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            trainer.fit(Module(), loader(tr), loader(va))
        net.load_state_dict(best["state"])
        self.net = net.cpu().eval()
        self.history = {"best_epoch": best["epoch"], "best_val_loss": best["loss"], "n_train": len(tr), "n_val": n_val}
        return self

    def predict(self, poi: Sequence[float]) -> dict[str, np.ndarray]:
        """``{cl_key: c_CL(poi)}`` at the POI values ``poi``."""
        import torch

        if self.net is None:
            raise RuntimeError("the regressor is not trained (call fit first)")
        with torch.no_grad():
            q = self.net(torch.as_tensor(self._x(poi), dtype=torch.float32)).double().numpy()
        return {cl_key(c): q[:, k] for k, c in enumerate(self.cls)}


def audit(regressor: QuantileRegressor, poi: Sequence[float], t: Sequence[float], tolerance: float = 3.0) -> dict:
    """Coverage of the learned critical values on independent toys: per audit point (the
    distinct values of ``poi``), the fraction of its toys with ``t <= c_CL(poi)`` with
    binomial errors; ``passed`` when every |pull| (fraction - CL)/error is at most
    ``tolerance``. Any ``regressor`` with ``cls``, ``dim`` and ``predict`` (e.g. a grid
    construction's critical values, to audit both on the same toys) will do."""
    pts, t = as_points(poi, regressor.dim), np.asarray(t, float)
    rows, worst = [], 0.0
    for v in np.unique(pts, axis=0):
        sel = np.all(pts == v, axis=1)
        c = regressor.predict(v[None, :])
        where = float(v[0]) if regressor.dim == 1 else v.tolist()
        row: dict[str, Any] = {"poi": where, "n_toys": int(sel.sum()), "levels": {}}
        for cl in regressor.cls:
            k = cl_key(cl)
            b = binomial_coverage(int(np.sum(t[sel] <= c[k][0])), int(sel.sum()), cl)
            row["levels"][k] = {**b, "critical": float(c[k][0])}
            worst = max(worst, abs(float(b["pull"])))
        rows.append(row)
    return {"points": rows, "max_abs_pull": worst, "tolerance": float(tolerance), "passed": bool(worst <= tolerance)}


def _train(toys: Sequence[Mapping], cls, low, high, seed, settings) -> tuple[QuantileRegressor, dict[str, int]]:
    """:class:`QuantileRegressor` trained on the ``(poi, t)`` pairs of the :func:`toys_over_range`
    outputs ``toys``, and their counts of toys, fallbacks and failed fits."""
    poi = np.concatenate([np.asarray(b["poi"], float) for b in toys])
    t = np.concatenate([np.asarray(b["t"], float) for b in toys])
    reg = QuantileRegressor(cls, low, high, seed=seed, settings=settings).fit(poi, t)
    counts = {
        "n_toys": len(t),
        "n_fallback": int(sum(int(b["n_fallback"]) for b in toys)),
        "n_failed": int(sum(int(b["n_failed"]) for b in toys)),
    }
    return reg, counts


def learned_construction(
    toys: Sequence[Mapping],
    audit_chunks: Sequence[Mapping],
    cls: Sequence[float],
    low: float,
    high: float,
    fine: Sequence[float],
    curves: Mapping[str, Mapping] | None = None,
    seed: int = 0,
    settings: Mapping | None = None,
    tolerance: float = 3.0,
) -> dict[str, Any]:
    """The learned construction of a workflow: train :class:`QuantileRegressor` on the toys
    spread over ``[low, high]`` (:func:`toys_over_range` outputs), audit it on the Neyman
    chunks ``audit_chunks`` (:func:`nsbi.neyman.compute_chunk` at points not used for
    training), give ``c_CL`` on the grid ``fine`` and, for each t curve of ``curves``
    (``{dataset: nsbi.neyman.observed_t output}`` on ``fine``), the intervals
    ``{mu: t(mu) <= c_CL(mu)}`` next to Wilks'."""
    from .neyman import acceptance_interval, asymptotic_critical, read_chunk

    kinds = {b.get("kind", "t") for b in toys}
    if len(kinds) != 1:
        raise ValueError(f"the toys mix test statistics {sorted(kinds)}")
    kind = kinds.pop()
    reg, counts = _train(toys, cls, low, high, seed, settings)
    chunks = [read_chunk(c) if not isinstance(c, Mapping) else c for c in audit_chunks]
    if any(c["kind"] != kind for c in chunks):
        raise ValueError(f"the audit toys' statistic is not the training toys' {kind!r}")
    a_poi = np.concatenate([np.full(len(c["t"]), float(c["poi_value"])) for c in chunks]) if chunks else np.empty(0)
    a_t = np.concatenate([np.asarray(c["t"], float) for c in chunks]) if chunks else np.empty(0)
    fine = np.asarray(fine, float)
    crit = reg.predict(fine)
    out: dict[str, Any] = {
        "method": "quantile_regression",
        "kind": kind,
        "cls": [float(c) for c in cls],
        **counts,
        "training": reg.history,
        "poi_values": fine.tolist(),
        "critical": {k: v.tolist() for k, v in crit.items()},
        "critical_asymptotic": {cl_key(c): asymptotic_critical(c, kind) for c in cls},
        "audit": audit(reg, a_poi, a_t, tolerance) if len(a_t) else None,
        "datasets": {},
    }
    for name, curve in (curves or {}).items():
        tc = np.interp(fine, np.asarray(curve["poi_values"], float), np.asarray(curve["t"], float))
        out["datasets"][name] = {
            "t": tc.tolist(),
            "intervals": {
                cl_key(c): {
                    "learned": acceptance_interval(fine, tc - crit[cl_key(c)]),
                    # none where there is no asymptotic form (the focused statistic)
                    "asymptotic": acceptance_interval(fine, tc - asymptotic_critical(c, kind))
                    if math.isfinite(asymptotic_critical(c, kind))
                    else None,
                }
                for c in cls
            },
        }
    return out


def learned_region(
    toys: Sequence[Mapping],
    audit_chunks: Sequence[Mapping],
    cls: Sequence[float],
    low: Sequence[float],
    high: Sequence[float],
    scans: Mapping[str, Mapping],
    seed: int = 0,
    settings: Mapping | None = None,
    tolerance: float = 3.0,
) -> dict[str, Any]:
    """The learned construction for two POIs: train :class:`QuantileRegressor` on toys spread
    over the box ``[low, high]`` (:func:`toys_over_range` outputs with ``pois``), audit it on the
    2-D Neyman chunks ``audit_chunks`` (:func:`nsbi.neyman.compute_chunk` at points
    ``{a: .., b: ..}`` not used for training), predict ``c_CL`` at every node of the 2-D scans
    ``scans`` (``{dataset: Scan2DResult.to_dict()}``, one grid) and draw each dataset's region
    next to Wilks' (:func:`nsbi.neyman2d.regions`)."""
    from .neyman import read_chunk
    from .neyman2d import asymptotic_critical_2d, regions

    names = {tuple(b.get("pois", ())) for b in toys}
    if len(names) != 1 or len(next(iter(names))) != 2:
        raise ValueError(f"the toys must all test the same two POIs, got {sorted(names)}")
    pois = list(names.pop())
    if any(b.get("kind", "t") != "t" for b in toys):
        raise ValueError("the 2-D construction uses the two-sided t")
    reg, counts = _train(toys, cls, low, high, seed, settings)
    chunks = [read_chunk(c) if not isinstance(c, Mapping) else c for c in audit_chunks]
    for c in chunks:
        if set(c.get("point", {})) != set(pois) or c["kind"] != "t":
            raise ValueError(f"an audit chunk does not test t at a point of {pois}")
    a_poi = (
        np.concatenate([np.tile([c["point"][pois[0]], c["point"][pois[1]]], (len(c["t"]), 1)) for c in chunks])
        if chunks
        else np.empty((0, 2))
    )
    a_t = np.concatenate([np.asarray(c["t"], float) for c in chunks]) if chunks else np.empty(0)
    first = next(iter(scans.values()))
    if list(first["pois"]) != pois:
        raise ValueError(f"the scans are of {first['pois']}, the toys of {pois}")
    x, y = np.asarray(first["x"], float), np.asarray(first["y"], float)
    mesh = np.stack(np.meshgrid(x, y, indexing="ij"), axis=-1).reshape(-1, 2)
    crit = {k: v.reshape(len(x), len(y)) for k, v in reg.predict(mesh).items()}
    return {
        "method": "quantile_regression",
        "pois": pois,
        "x": x.tolist(),
        "y": y.tolist(),
        "cls": [float(c) for c in cls],
        **counts,
        "training": reg.history,
        "critical": {k: {"value": v.tolist()} for k, v in crit.items()},  # as nsbi.neyman2d.gather_region
        "critical_asymptotic": {cl_key(c): asymptotic_critical_2d(c) for c in cls},
        "audit": audit(reg, a_poi, a_t, tolerance) if len(a_t) else None,
        "datasets": regions(scans, crit, cls),
    }
