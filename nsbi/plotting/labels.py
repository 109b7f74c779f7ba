"""Plot label of the parameter of interest (``morphing.poi``, ``morphing.poi_label``).

Plots never assume the POI is called μ: axis, colour-bar and legend texts use the POI's
label, by default derived from its name by :func:`default_poi_label`, and formulas (``t`` of
the POI, ``p(x|POI)``) use its math-mode form, :func:`poi_math`. This module imports nothing
heavy (no matplotlib), so that :mod:`nsbi.config` and the workflow can use it.
"""

from __future__ import annotations

import re

__all__ = ["GREEK", "default_poi_label", "poi_math", "resolve_poi_label"]

#: names of Greek letters that matplotlib's mathtext (and LaTeX) write as ``\<name>``
GREEK = frozenset(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi pi "
    "varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega "
    "Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega".split()
)

#: the label when neither a label nor a POI name is known (results written without one)
FALLBACK = r"$\mu$"

_MATH_ONLY = re.compile(r"^\$([^$]+)\$$")
_TEXT_ESCAPES = {"\\": r"\backslash ", "_": r"\_", " ": r"\ ", "{": r"\{", "}": r"\}", "%": r"\%", "#": r"\#"}


def _text(text: str) -> str:
    """``text`` as upright math-mode text (``\\mathrm{...}``, special characters escaped)."""
    return r"\mathrm{" + "".join(_TEXT_ESCAPES.get(ch, ch) for ch in text) + "}"


def default_poi_label(name: str) -> str:
    """Label of a POI called ``name`` when the config gives no ``morphing.poi_label``.

    A Greek letter name becomes that letter in math text (``mu`` -> ``$\\mu$``, ``theta`` ->
    ``$\\theta$``); a Greek letter name with a suffix after its first underscore gets the suffix
    as an upright subscript (``mu_ggF`` -> ``$\\mu_{\\mathrm{ggF}}$``). Any other name is
    used as plain text (``cw`` -> ``cw``): guessing sub- or superscripts would be wrong as
    often as right; give ``morphing.poi_label`` (e.g. ``"$c_W$"``) for typeset math.
    """
    head, sep, rest = name.partition("_")
    if head not in GREEK:
        return name
    if not sep:
        return rf"$\{head}$"
    return rf"$\{head}_{{{_text(rest)}}}$"


def poi_math(label: str) -> str:
    """Math-mode content standing for the POI in formulas (``t_{...}``, ``p(x|...)``): the
    inside of a label that is one ``$...$`` segment (``$c_W$`` -> ``c_W``), the text of a
    label without ``$`` as upright text (``cw`` -> ``\\mathrm{cw}``), and ``\\mathrm{POI}``
    for a label mixing text and math (which cannot be a subscript)."""
    m = _MATH_ONLY.match(label.strip())
    if m:
        return m.group(1).strip()
    if "$" not in label:
        return _text(label)
    return r"\mathrm{POI}"


def resolve_poi_label(label: str | None = None, poi: str | None = None) -> str:
    """The label to draw: ``label`` if given, else the default label of the POI name ``poi``
    (:func:`default_poi_label`), else ``$\\mu$`` (results that name no POI)."""
    if label:
        return label
    if poi:
        return default_poi_label(str(poi))
    return FALLBACK
