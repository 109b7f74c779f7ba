"""Classifier architectures, the model registry and the weighted losses.

Registry
--------
The configuration names the architecture (``settings["model"]``, default ``"mlp"``).
Users register their own :class:`lightning.LightningModule` with::

    from nsbi.train.models import register_model, RatioModuleBase

    @register_model("my_net")
    class MyNet(RatioModuleBase):
        def build_network(self, n_features, n_outputs, settings):
            return torch.nn.Sequential(...)

A registered class is instantiated as ``cls(n_features=..., mean=..., std=...,
settings=..., n_outputs=...)`` and must

* accept **raw** features (shape ``(N, n_features)``, float32) in ``forward`` -- the
  standardisation belongs inside the module (buffers), so the exported ONNX graph takes
  raw features;
* return from ``forward`` the per-event logit ``log r`` (shape ``(N,)``) for a ratio
  model, or class probabilities ``(N, n_classes)`` for a region classifier;
* train on the batches the trainer builds: ``(x, w_num, w_den)`` for ratio models (the
  row's signed, class-normalised weight as numerator and as denominator event; one of them
  is zero unless the same event is in both samples) and ``(x, label, w)`` for classifiers
  -- subclasses of :class:`RatioModuleBase` inherit the matching ``batch_loss``.

Downstream stages only consume the exported ONNX file, so any such module works.

Negative weights
----------------
The loss is the *signed*-weight BCE (cross-entropy for the multi-class case),

    L[s] = - sum_i w_i [ y_i log s(x_i) + (1 - y_i) log(1 - s(x_i)) ],

with the weights normalised so that each class has the same total (signed) weight.
Its expectation is  - int [ p_1(x) log s(x) + p_0(x) log(1 - s(x)) ] dx  where
``p_1``/``p_0`` are the weighted (signed) densities of the two classes.  As long as the
*physical* densities are non-negative everywhere (true for any physical process,
including interference samples whose negative-weight events cancel positive ones
locally), the integrand is minimised point-wise at ``s = p_1/(p_0 + p_1)``, i.e.
``logit(s) = log p_1/p_0 = log r``: negative weights need no special treatment and the
minibatch loss is an unbiased estimator of the population loss.  Discarding the sign
(training on ``|w|``) would instead learn the ratio of the ``|w|``-densities, which is
wrong (see ``tests/test_train.py::test_negative_weights_exact_ratio``).  Finite-sample
caveat: in regions where the *sample* sum of weights is negative the empirical loss is
unbounded below, so a very flexible network trained for long could over-fit there;
early stopping on the (signed) validation loss and smooth, moderately sized networks
guard against it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "MLPMultiClass",
    "MLPRatio",
    "RatioModuleBase",
    "available_models",
    "build_model",
    "get_model",
    "normalise_class_weights",
    "paired_weighted_bce",
    "register_model",
    "weighted_bce",
    "weighted_cross_entropy",
]

_REGISTRY: dict[str, type] = {}

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
}

_OPTIMISERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}


def register_model(name: str):
    """Class decorator registering a LightningModule under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError("model name must be a non-empty string")

    def deco(cls):
        if not (isinstance(cls, type) and issubclass(cls, L.LightningModule)):
            raise TypeError(f"register_model({name!r}): {cls!r} is not a lightning.LightningModule subclass")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered to {_REGISTRY[name].__qualname__}")
        _REGISTRY[name] = cls
        return cls

    return deco


def get_model(name: str) -> type:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {sorted(_REGISTRY)}") from None


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, *, n_features: int, mean, std, settings: Mapping[str, Any], n_outputs: int = 1):
    cls = get_model(name)
    return cls(n_features=n_features, mean=mean, std=std, settings=dict(settings), n_outputs=n_outputs)


# --------------------------------------------------------------------------- losses
def normalise_class_weights(weights, labels, n_classes: int | None = None) -> np.ndarray:
    """Rescale signed weights so every class has the same total weight ``N / n_classes``
    (``N`` = number of events), i.e. a mean weight of about one.  Raises if a class has
    a non-positive (or non-finite) total weight."""
    w = np.asarray(weights, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    if w.shape != y.shape:
        raise ValueError(f"weights {w.shape} and labels {y.shape} differ in shape")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights contain non-finite values")
    k = int(y.max()) + 1 if n_classes is None else int(n_classes)
    out = np.empty_like(w)
    target = len(w) / k
    for c in range(k):
        sel = y == c
        tot = w[sel].sum()
        if not sel.any() or not np.isfinite(tot) or tot <= 0:
            raise ValueError(f"class {c} has non-positive total weight {tot!r} ({sel.sum()} events)")
        out[sel] = w[sel] * (target / tot)
    return out


def weighted_bce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``mean_i w_i * BCE(sigmoid(logit_i), y_i)`` (signed weights allowed)."""
    per = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
    return (weights.to(logits.dtype) * per).mean()


def paired_weighted_bce(logits: torch.Tensor, w_num: torch.Tensor, w_den: torch.Tensor) -> torch.Tensor:
    """``mean_i [ -w_num,i log s_i - w_den,i log(1 - s_i) ]`` with ``s = sigmoid(logit)``.

    Each row is an event with a weight as numerator (label 1) and as denominator
    (label 0) member; an ordinary event has one of them zero, which gives exactly
    :func:`weighted_bce`.  For the *same* event in both samples (weight systematics) the
    row's loss is minimised at ``logit = log(w_num / w_den)``."""
    z = logits
    return (w_num.to(z.dtype) * F.softplus(-z) + w_den.to(z.dtype) * F.softplus(z)).mean()


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``mean_i w_i * CE(softmax(logits_i), y_i)`` (signed weights allowed)."""
    per = F.cross_entropy(logits, labels.long(), reduction="none")
    return (weights.to(logits.dtype) * per).mean()


# --------------------------------------------------------------------------- modules
def _mlp(n_in: int, n_out: int, settings: Mapping[str, Any]) -> nn.Sequential:
    hidden = settings.get("hidden", [64, 64, 64])
    if isinstance(hidden, (int, np.integer)):  # width + number of layers
        widths = [int(hidden)] * int(settings.get("layers", 3))
    else:
        widths = [int(h) for h in hidden]
    act_name = str(settings.get("activation", "silu")).lower()
    if act_name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act_name!r}; choose from {sorted(ACTIVATIONS)}")
    if any(h < 1 for h in widths):
        raise ValueError(f"invalid MLP hidden widths {widths}")
    layers: list[nn.Module] = []
    n = n_in
    for width in widths:
        layers += [nn.Linear(n, width), ACTIVATIONS[act_name]()]
        n = width
    out = nn.Linear(n, n_out)
    if bool(settings.get("zero_init_output", True)):
        # start from log r = 0 (r = 1; uniform class probabilities): the natural prior for
        # ratios close to one (systematic variations) and no random offset if training is
        # short; gradients still flow (the hidden activations are non-zero)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
    layers.append(out)
    return nn.Sequential(*layers)


def _plain(v) -> bool:
    scalar = (int, float, str, bool, type(None))
    return isinstance(v, scalar) or (isinstance(v, (list, tuple)) and all(isinstance(i, scalar) for i in v))


class RatioModuleBase(L.LightningModule):
    """Base class: raw-feature standardisation buffers, optimiser from settings,
    signed-weight BCE training/validation steps.  Subclasses implement
    :meth:`build_network` (returning a module mapping standardised features to
    ``n_outputs`` logits)."""

    def __init__(
        self, n_features: int, mean=None, std=None, settings: Mapping[str, Any] | None = None, n_outputs: int = 1
    ):
        super().__init__()
        settings = dict(settings or {})
        self.n_features = int(n_features)
        self.n_outputs = int(n_outputs)
        self.settings = settings
        mean = np.zeros(n_features) if mean is None else np.asarray(mean, dtype=np.float64)
        std = np.ones(n_features) if std is None else np.asarray(std, dtype=np.float64)
        if mean.shape != (n_features,) or std.shape != (n_features,):
            raise ValueError(f"mean/std must have shape ({n_features},), got {mean.shape}, {std.shape}")
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        self.register_buffer("feature_mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("feature_scale", torch.as_tensor(1.0 / std, dtype=torch.float32))
        self.net = self.build_network(self.n_features, self.n_outputs, settings)
        self.hparams.update(
            {
                "n_features": self.n_features,
                "n_outputs": self.n_outputs,
                **{k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items() if _plain(v)},
            }
        )

    def build_network(self, n_features: int, n_outputs: int, settings: Mapping[str, Any]) -> nn.Module:
        raise NotImplementedError

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.feature_mean) * self.feature_scale

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(self.standardise(x))
        return out.squeeze(-1) if self.n_outputs == 1 else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # ratio: logit == log r
        return self.logits(x)

    def batch_loss(self, batch) -> torch.Tensor:
        """Binary batches are ``(x, w_num, w_den)``: the row's weight as a numerator
        (label 1) and as a denominator (label 0) event; see :func:`paired_weighted_bce`."""
        x, w_num, w_den = batch
        return paired_weighted_bce(self.logits(x), w_num, w_den)

    def _step(self, batch, name):
        x = batch[0]
        loss = self.batch_loss(batch)
        self.log(name, loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train_loss")

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val_loss")

    def configure_optimizers(self):
        s = self.settings
        name = str(s.get("optimizer", "adam")).lower()
        if name not in _OPTIMISERS:
            raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(_OPTIMISERS)}")
        kw = {"lr": float(s.get("learning_rate", 1e-3)), "weight_decay": float(s.get("weight_decay", 0.0))}
        if name == "sgd":
            kw["momentum"] = float(s.get("momentum", 0.9))
        opt = _OPTIMISERS[name](self.parameters(), **kw)
        decay = s.get("lr_decay")
        if not decay:
            return opt
        # halve (``factor``) the learning rate when the validation loss has not improved for
        # ``patience`` epochs: late epochs refine log r instead of jittering around it
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt,
            mode="min",
            factor=float(decay.get("factor", 0.5)),
            patience=int(decay.get("patience", 3)),
            min_lr=float(decay.get("min_lr", 0.0)),
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss", "interval": "epoch"}}


@register_model("mlp")
class MLPRatio(RatioModuleBase):
    """Fully connected network; ``settings["hidden"]`` is a list of hidden-layer widths
    (or an int width together with ``settings["layers"]``), ``settings["activation"]``
    the activation; output = logit = log r."""

    def build_network(self, n_features, n_outputs, settings):
        return _mlp(n_features, n_outputs, settings)


class MultiClassMixin:
    def forward(self, x):  # exported graph returns class probabilities
        return torch.softmax(self.logits(x), dim=-1)

    def batch_loss(self, batch):
        """Multi-class batches are ``(x, label, w)``."""
        x, y, w = batch
        return weighted_cross_entropy(self.logits(x), y, w)


@register_model("mlp_multiclass")
class MLPMultiClass(MultiClassMixin, MLPRatio):
    """Multi-class MLP (region classifier); ``forward`` returns softmax probabilities."""
