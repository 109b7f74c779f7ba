"""The compiled likelihood :class:`Model` (see :mod:`nsbi.model` for the statistical model)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from .arrays import jax, jnp
from .binned import BinnedChannels
from .errors import ModelError
from .modifiers import register_modifier, register_staterror
from .morphing import MorphingCoefficients
from .parameters import ConstraintTerms, ParameterRegistry

if TYPE_CHECKING:
    from .unbinned import UnbinnedChannel

__all__ = ["Model"]


class Model:
    """Compiled likelihood for a workspace dataset.

    Parameters
    ----------
    spec : workspace dict (nsbi format; see :mod:`nsbi.workspace`). Binned channels follow the
        pyhf layout; unbinned channels list samples with ``yield``.
    observations : mapping channel -> list of counts (binned) or dict of per-event arrays
        (unbinned: ``weight`` and ``logr_*`` columns, see :func:`event_columns`).
    measurement : the measurement dict ``{"name", "config": {"poi", "parameters"}}``.
    sqrt_poi : hold the POI as its square root ``kappa = sqrt(POI)`` in the parameter vector
        (init, bounds and values in ``kappa``; :mod:`nsbi.model.morphing`): the coordinate in
        which interference morphing (``mu - sqrt(mu)``, ...) is polynomial, so that fits near
        ``POI = 0`` see finite, exact derivatives. Only where :attr:`sqrt_poi_possible`.
    backend : what the numpy entry points (:meth:`twice_nll`, ...) evaluate with: ``"auto"``
        (numpy for a pure HistFactory model, JAX otherwise; see :attr:`backend`), ``"jax"``
        (always compiled JAX), ``"numpy"`` (an error where the model needs JAX).

    Attributes
    ----------
    spec, measurement, measurement_name, poi_name, poi_index : the inputs and the POI.
    sqrt_poi : whether the POI's entry of the parameter vector is its square root;
    backend : ``"numpy"`` or ``"jax"``, what the numpy entry points evaluate with.
    sqrt_poi_possible : whether it may be: the POI enters only morphing expressions, at least
        one of them as ``sqrt(POI)``, and its lower bound is >= 0.
    parsets, par_slices, npars, par_names : the parameter sets (:class:`ParameterSet`), their
        slices of the flat parameter vector, its length and the labels of its components.
    init, bounds, fixed, constrained, auxdata : per component of the parameter vector
        (``auxdata``: in pyhf's order, Gaussian constraints then Poisson ones).
    constraints : :class:`ConstraintTerms` (constraint indices, widths and auxiliary data).
    binned_channels, unbinned_channels : the channel dicts of ``spec`` by type.
    binned_offsets, nbins, binned_samples, binned_observations : layout of the concatenated
        bins of the binned channels, their (channel, sample) rows and the observed counts.
    unbinned_terms, n_unbinned_events, data : the compiled unbinned channels
        (:class:`UnbinnedChannel`), their total number of events and their event arrays.
    """

    def __init__(
        self,
        spec: Mapping,
        observations: Mapping[str, Any],
        measurement: Mapping | None = None,
        sqrt_poi=False,
        backend: str = "auto",
    ):
        self.spec = spec
        measurement = measurement or {"name": "default", "config": {"poi": None, "parameters": []}}
        self.measurement = measurement
        cfg = measurement.get("config", {})
        self.measurement_name = measurement.get("name")
        self.poi_name = cfg.get("poi")
        reg = ParameterRegistry({p["name"]: p for p in cfg.get("parameters", [])})

        channels = list(spec["channels"])
        self.binned_channels = [c for c in channels if c.get("type", "binned") == "binned"]
        self.unbinned_channels = [c for c in channels if c.get("type", "binned") == "unbinned"]

        # ---- register parameters in order of appearance ----
        self.sqrt_poi = bool(sqrt_poi)
        self._morphing = MorphingCoefficients({self.poi_name} if self.sqrt_poi else ())
        for ch in channels:
            nb = len(ch["samples"][0]["data"]) if ch.get("type", "binned") == "binned" else 1
            for s in ch["samples"]:
                if s.get("morphing") is not None:
                    for name in self._morphing.register(s["morphing"]):
                        reg.add(name, "morphing")
                for m in s.get("modifiers", []):
                    register_modifier(reg, ch, s, m, nb)
        register_staterror(reg, self.binned_channels)
        reg.finalize(self.poi_name)
        self.sqrt_poi_possible = self._sqrt_poi_possible(channels, reg)
        if self.sqrt_poi:
            if not self.sqrt_poi_possible:
                raise ModelError(
                    f"POI {self.poi_name!r} cannot be fitted in sqrt({self.poi_name}): it must enter only morphing "
                    f"expressions, at least one as sqrt({self.poi_name}), and have a lower bound >= 0"
                )
            ps = reg.sets[self.poi_name]
            ps.inits = [float(np.sqrt(max(v, 0.0))) for v in ps.inits]
            ps.bounds = [(float(np.sqrt(lo)), float(np.sqrt(hi))) for lo, hi in ps.bounds]

        # ---- flatten ----
        self.parsets = list(reg.sets.values())
        self.par_slices: dict[str, slice] = {}
        i = 0
        for ps in self.parsets:
            self.par_slices[ps.name] = slice(i, i + ps.n)
            i += ps.n
        self.npars = i
        self.par_names = [lab for ps in self.parsets for lab in ps.labels]
        self.init = np.array([v for ps in self.parsets for v in ps.inits], dtype=float)
        self.bounds = [tuple(b) for ps in self.parsets for b in ps.bounds]
        self.fixed = np.array([v for ps in self.parsets for v in ps.fixed], dtype=bool)
        self.poi_index = self.par_slices[self.poi_name].start if self.poi_name else None
        self.constrained = np.zeros(self.npars, dtype=bool)
        for ps in self.parsets:
            if ps.constraint:
                self.constrained[self.par_slices[ps.name]] = True

        self.constraints = ConstraintTerms.collect(self.parsets, self.par_slices)
        self.auxdata = self.constraints.auxdata
        self._binned = BinnedChannels(
            self.binned_channels, observations, self.parsets, self.par_slices, self.npars, self._morphing
        )
        self.binned_offsets = self._binned.offsets
        self.nbins = self._binned.nbins
        unb = []
        if self.unbinned_channels:  # JAX from here on (kernels with a custom VJP, event arrays on the device)
            from .unbinned import UnbinnedChannel
        for ch in self.unbinned_channels:
            ev = observations.get(ch["name"])
            if ev is None:
                raise ModelError(f"no events for unbinned channel {ch['name']!r}")
            unb.append(UnbinnedChannel(ch, ev, self.parsets, self.par_slices, self.npars, self._morphing))
        self._unbinned = tuple(unb)

        # large per-event arrays are passed as arguments (never baked into the compiled
        # function as constants: that makes XLA compilation slow and memory hungry)
        self._data = [u.arrays for u in self._unbinned]
        # a pure HistFactory model (binned, no morphing) is evaluated with numpy: no JAX import,
        # tracing or compilation for a one-off fit; JAX for everything else (see _jitted)
        if backend not in ("auto", "numpy", "jax"):
            raise ModelError(f"backend must be 'auto', 'numpy' or 'jax', not {backend!r}")
        numpy_possible = not self._unbinned and not self._binned.has_morphing
        if backend == "numpy" and not numpy_possible:
            raise ModelError("backend 'numpy' needs a binned model without morphing coefficients")
        self._numpy = numpy_possible and backend != "jax"

    @cached_property
    def _jitted(self) -> dict[str, Any]:
        """The compiled entry points, made on first use (importing JAX then)."""
        return {
            "twice_nll": jax.jit(self.twice_nll_jax),
            "vg": jax.jit(jax.value_and_grad(self.twice_nll_jax)),
            # Hessian: closed forms and autodiff for the cheap parts, the unbinned event sums
            # from a one-pass kernel
            "hess": jax.jit(self._hessian_jax),
            "vgh": jax.jit(self.value_grad_hessian_with),
            "hess_autodiff": jax.jit(jax.hessian(lambda p, d: self.twice_nll_jax(p, d, False))),
        }

    @property
    def backend(self) -> str:
        """What the numpy entry points (:meth:`twice_nll`, ...) evaluate with: ``"numpy"`` for a
        pure HistFactory model (binned channels without morphing coefficients), else ``"jax"``.
        The pure JAX functions (:meth:`twice_nll_jax`, ...) are there in both cases."""
        return "numpy" if self._numpy else "jax"

    def _numpy_terms(self, pars, hessian: bool):
        """-2 ln L, gradient and Hessian (``None`` with ``hessian=False``) of a pure HistFactory
        model with numpy, from the same closed forms as the JAX path."""
        p = np.asarray(pars, dtype=float)
        v, g, h = self.constraints.logpdf_grad_hessian(p, xp=np, hessian=hessian)
        vb, gb, hb = self._binned.logpdf_grad_hessian(p, xp=np, hessian=hessian)
        return -2.0 * float(v + vb), -2.0 * (g + gb), (-2.0 * (h + hb) if hessian else None)

    def _sqrt_poi_possible(self, channels, reg) -> bool:
        poi = self.poi_name
        if poi is None or poi not in reg.sets or not self._morphing.uses_sqrt_of(poi):
            return False
        in_modifiers = any(m["name"] == poi for ch in channels for s in ch["samples"] for m in s.get("modifiers", []))
        return not in_modifiers and all(lo >= 0 for lo, _ in reg.sets[poi].bounds)

    # ------------------------------------------------------------------ public views
    @property
    def unbinned_terms(self) -> tuple[UnbinnedChannel, ...]:
        """The compiled unbinned channels, in the order of :attr:`unbinned_channels`."""
        return self._unbinned

    @property
    def n_unbinned_events(self) -> int:
        """Total number of events in the unbinned channels (0 without unbinned channels)."""
        return sum(u.n_events for u in self._unbinned)

    @property
    def data(self) -> list[dict[str, Any]]:
        """The device event arrays, one dict per unbinned channel (:attr:`UnbinnedChannel.arrays`:
        keys ``w``, ``r``, ``lu``, ``ld``, ``gu``, ``gd``): the ``data`` argument of
        :meth:`twice_nll_jax` and :meth:`twice_nll_with` (a new list each time, same arrays)."""
        return list(self._data)

    @property
    def binned_samples(self) -> tuple[tuple[str, str], ...]:
        """(channel, sample) names of the rows of the binned rates; empty without binned samples."""
        return self._binned.rows

    @property
    def binned_observations(self) -> np.ndarray:
        """Observed binned counts concatenated over the binned channels (:attr:`nbins`,), in the
        layout of :attr:`binned_offsets`; empty without binned samples. Read-only view."""
        v = self._binned.observations.view()
        v.flags.writeable = False
        return v

    # ------------------------------------------------------------------ binned
    def expected_binned(self, pars) -> dict[str, dict[str, np.ndarray]]:
        """Expected counts per binned channel and sample at ``pars``."""
        return self._binned.expected(pars)

    # ------------------------------------------------------------------ objective
    def twice_nll_jax(self, p, data, custom_grad=True):
        """Pure JAX -2 ln L at the parameter vector ``p`` with the event arrays ``data``
        (layout of :attr:`data`). ``custom_grad=False`` differentiates the event scan by plain
        autodiff (forward mode, Hessians, gradients w.r.t. ``data``); the default uses the
        one-pass value+gradient kernel for reverse mode."""
        lp = self.constraints.logpdf(p) + self._binned.logpdf(p)
        for u, d in zip(self._unbinned, data):
            lp = lp + u.logl(p, d, custom_grad)
        return -2.0 * lp

    def _hessian_jax(self, p, data):
        """Exact Hessian of -2 ln L (see :meth:`value_grad_hessian_with`)."""
        return self.value_grad_hessian_with(p, data)[2]

    def value_grad_hessian_with(self, p, data, binned_obs=None, aux_normal=None, aux_poisson=None):
        """-2 ln L, its gradient and its exact Hessian from one pass over the events, with
        replaceable observations (arguments as in :meth:`twice_nll_with`; pure JAX, ``vmap``-able:
        the value, gradient and Hessian of a pseudo-experiment).

        Autodiff of the constraint and yield terms,
        :meth:`BinnedChannels.logpdf_grad_hessian` for the binned channels, plus for each unbinned channel
        E(u) = sum_i w_i ln s_i with u = (yields, shape parameters): value and gradient
        J^T g_u, and Hessian J^T H_u J + sum_c (dE/dy_c) d2 y_c/d theta2, with g_u and H_u from
        :func:`nsbi.model.kernels.events_hessian` (one pass over the events instead of
        forward-over-reverse autodiff through the event scan)."""

        def yields(q):
            lp = jnp.zeros((), dtype=q.dtype)
            for u in self._unbinned:
                lp = lp - jnp.sum(u.yields(q))
            return lp

        v, G, H = self.constraints.logpdf_grad_hessian(p, aux_normal, aux_poisson, xp=jnp)
        if self._unbinned:
            from .kernels import events_hessian

            v_yields, g_yields = jax.value_and_grad(yields)(p)
            v, G, H = v + v_yields, G + g_yields, H + jax.hessian(yields)(p)
        if len(self._binned):  # the binned Poisson terms from their structured kernel
            vb, gb, hb = self._binned.logpdf_grad_hessian(p, binned_obs)
            v, G, H = v + vb, G + gb, H + hb
        for u, d in zip(self._unbinned, data):
            y = u.event_yields(p)
            C = y.shape[0]

            def uvec(q, u=u):
                a = q[u.shape_par] if len(u.shape_par) else jnp.zeros(0, dtype=q.dtype)
                return jnp.concatenate([u.event_yields(q), a])

            alpha = uvec(p)[C:]
            v_u, g_u, H_u = events_hessian(y, alpha, d)
            J = jax.jacfwd(uvec)(p)
            gy = jax.lax.stop_gradient(g_u[:C])
            v = v + v_u
            G = G + J.T @ g_u
            H = H + J.T @ H_u @ J + jax.hessian(lambda q, u=u, gy=gy: jnp.dot(gy, u.event_yields(q)))(p)
        return -2.0 * v, -2.0 * G, -2.0 * H

    def twice_nll_with(self, p, data, binned_obs=None, aux_normal=None, aux_poisson=None, custom_grad=True):
        """Pure JAX -2 ln L with replaceable observations (hook for vmapped pseudo-experiments).

        ``data``: one dict per unbinned channel in the layout of :attr:`data` (keys ``w``,
        ``r``, ``lu``, ``ld``, ``gu``, ``gd``; shapes (nchunks, [K,] [C,] chunk)); ``binned_obs``:
        concatenated binned counts (``self.nbins``,); ``aux_normal`` / ``aux_poisson``: auxiliary
        data of the Gaussian / Poisson constraints in parameter order
        (``self.constraints.normal_index`` / ``self.constraints.poisson_index``). ``None`` keeps
        the model's own value. ``custom_grad=False`` uses plain autodiff (forward mode and
        Hessians; gradients w.r.t. ``data``).
        """
        lp = self.constraints.logpdf(p, aux_normal, aux_poisson) + self._binned.logpdf(p, binned_obs)
        for u, d in zip(self._unbinned, data):
            lp = lp + u.logl(p, d, custom_grad)
        return -2.0 * lp

    def twice_nll(self, pars) -> float:
        """-2 ln L at ``pars`` (binned part identical to pyhf's ``-2 model.logpdf``)."""
        if self._numpy:
            p = np.asarray(pars, dtype=float)
            return -2.0 * float(self.constraints.logpdf(p, xp=np) + self._binned.logpdf(p, xp=np))
        return float(self._jitted["twice_nll"](jnp.asarray(pars, dtype=float), self._data))

    def twice_nll_and_grad(self, pars) -> tuple[float, np.ndarray]:
        """-2 ln L and its gradient at ``pars`` (one pass over the events)."""
        if self._numpy:
            return self._numpy_terms(pars, hessian=False)[:2]
        v, g = self._jitted["vg"](jnp.asarray(pars, dtype=float), self._data)
        return float(v), np.asarray(g)

    def hessian(self, pars) -> np.ndarray:
        """Exact Hessian of -2 ln L at ``pars``."""
        if self._numpy:
            return self._numpy_terms(pars, hessian=True)[2]
        return np.asarray(self._jitted["hess"](jnp.asarray(pars, dtype=float), self._data))

    def hessian_autodiff(self, pars) -> np.ndarray:
        """Hessian of -2 ln L at ``pars`` by plain forward-over-reverse autodiff of the whole
        likelihood with JAX (reference for :meth:`hessian`; much slower on many events)."""
        return np.asarray(self._jitted["hess_autodiff"](jnp.asarray(pars, dtype=float), self._data))

    def twice_nll_grad_hessian(self, pars) -> tuple[float, np.ndarray, np.ndarray]:
        """-2 ln L, gradient and exact Hessian at ``pars`` from one pass over the events
        (about the cost of :meth:`hessian`; used by the Newton minimiser in :mod:`nsbi.fit`)."""
        if self._numpy:
            return self._numpy_terms(pars, hessian=True)
        v, g, H = self._jitted["vgh"](jnp.asarray(pars, dtype=float), self._data)
        return float(v), np.asarray(g), np.asarray(H)

    def index(self, label: str) -> int:
        """Position of the parameter label ``label`` (e.g. ``"mu"``, ``"gamma[2]"``) in the vector."""
        try:
            return self.par_names.index(label)
        except ValueError:
            raise KeyError(f"unknown parameter {label!r}; known: {self.par_names}") from None

    def __repr__(self) -> str:
        return (
            f"Model(binned={[c['name'] for c in self.binned_channels]}, "
            f"unbinned={[c['name'] for c in self.unbinned_channels]}, npars={self.npars}, poi={self.poi_name!r})"
        )
