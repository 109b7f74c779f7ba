"""The array namespaces the model is evaluated with: numpy, or JAX imported on first use.

Every function of the binned likelihood is written once and takes ``xp`` (``numpy`` or
``jax.numpy``): JAX compiles it, differentiates it and maps it over pseudo-experiments; numpy
evaluates a pure HistFactory model without importing JAX at all, which is what a one-off
``nsbi fit`` of a published likelihood spends most of its time on otherwise (importing JAX,
tracing and compiling two programs, against a fit that then takes milliseconds).

``jax`` and ``jnp`` here are stand-ins that import :mod:`nsbi.jax_setup` (double precision,
compilation cache) the first time one of their attributes is used, so importing the model
costs no JAX. Double precision must hold from the first JAX array on, whoever creates it:
when JAX is not imported yet, importing this module sets ``JAX_ENABLE_X64`` (unless set), which
JAX reads when it is imported; when it is, :mod:`nsbi.jax_setup` is applied at once (nothing
left to save). The two operations whose spelling differs between the libraries, a sum over
segments and a scatter-add, are the functions below.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import numpy as np

__all__ = ["gammaln", "is_jax", "jax", "jnp", "scatter_add", "segment_sum", "xlogy"]


class _Deferred:
    """A module imported from :mod:`nsbi.jax_setup` when first looked into."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        from nsbi import jax_setup

        return getattr(getattr(jax_setup, self._name), attr)

    def __repr__(self) -> str:
        return f"<deferred {self._name} (nsbi.jax_setup)>"


jax: Any = _Deferred("jax")
jnp: Any = _Deferred("jnp")

if "jax" in sys.modules:
    import nsbi.jax_setup  # noqa: F401 - JAX is loaded already: its settings now, before any array
else:
    os.environ.setdefault("JAX_ENABLE_X64", "1")


def is_jax(xp) -> bool:
    """Whether ``xp`` is ``jax.numpy`` (or its stand-in :data:`jnp`)."""
    return xp is not np


def segment_sum(values, segments, n: int, xp):
    """Sums of ``values`` (rows, ...) over the rows with equal ``segments`` index -> (n, ...)."""
    if is_jax(xp):
        return jax.ops.segment_sum(values, segments, num_segments=n, indices_are_sorted=False)
    out = np.zeros((n, *values.shape[1:]), dtype=values.dtype)
    np.add.at(out, segments, values)
    return out


def scatter_add(shape, index, values, xp, dtype=float):
    """``zeros(shape)`` with ``values`` added at ``index`` (repeated indices accumulate)."""
    if is_jax(xp):
        return jnp.zeros(shape, dtype=dtype).at[index].add(values)
    out = np.zeros(shape, dtype=dtype)
    np.add.at(out, index, values)
    return out


def gammaln(x, xp):
    """ln Gamma(x), elementwise."""
    if is_jax(xp):
        return jax.scipy.special.gammaln(x)
    x = np.asarray(x, dtype=float)
    return np.array([math.lgamma(v) for v in x.ravel().tolist()], dtype=float).reshape(x.shape)


def xlogy(x, y, xp):
    """x ln y with 0 ln y = 0, elementwise."""
    if is_jax(xp):
        return jax.scipy.special.xlogy(x, y)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x == 0, 0.0, x * np.log(y))
