"""Loading and validation of the analysis configuration.

The configuration is validated against the JSON schema (draft 2020-12) shipped as package
data, ``nsbi/schemas/config.schema.yaml`` (loaded with :mod:`importlib.resources`); missing
optional keys are filled with the schema defaults. On top of the schema, :func:`validate`
checks what a schema cannot express (unique names, references between sections,
expressions that parse, consistent binning, output directories inside the working
directory) and raises a :class:`ConfigError` whose message names the offending key, e.g.
``config key 'systematics[1].samples[0]': unknown sample 'ttZ'``.

Every configured name (samples, regions, systematics, features, region-classifier classes,
the POI, the analysis, ...) becomes part of file paths, Snakemake wildcards, JSON keys or
column names, so the schema gives all of them one pattern, ``$defs/name``
(:data:`NAME_PATTERN`): a letter, then letters, digits and single underscores. A relative
``output_dir`` (or ``simulation.output_dir``) must not contain ``..``; an absolute one is
taken as given. Configs are read with ``yaml.safe_load`` only.

The small helpers below (:func:`variations`, :func:`prep_targets`, ...) are what the
Snakemake rules use to expand targets; they are plain functions so that they are tested
without Snakemake.
"""

from __future__ import annotations

import copy
import functools
import re
import warnings
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import yaml

from .expr import ExpressionError, parse
from .io import caller_stacklevel
from .morphing import MorphingError, coefficients_from_points

# package data of nsbi.schemas (see pyproject.toml, [tool.setuptools.package-data])
SCHEMA_PACKAGE = "nsbi.schemas"
SCHEMA_RESOURCE = "config.schema.yaml"
NOMINAL = "nominal"
DIRECTIONS = ("up", "down")


class ConfigError(ValueError):
    """The analysis configuration is invalid. The message names the config key."""


#: renamed config keys, old -> new key path: the old key is still read for one version (moved to
#: the new key with a DeprecationWarning); giving both is an error
RENAMED_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("validation", "coverage", "mu_true"): ("validation", "coverage", "poi_true"),
}

#: configured directories the workflow writes to (relative ones must stay inside the working directory)
OUTPUT_DIRS = (("output_dir",), ("simulation", "output_dir"))


# --------------------------------------------------------------------------- schema


def load_schema(path: str | Path | None = None) -> dict[str, Any]:
    """The config schema: the one shipped with nsbi, or the file at ``path``."""
    if path is not None:
        return yaml.safe_load(Path(path).read_text())
    return yaml.safe_load(resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_RESOURCE).read_text())


NAME_RULE = "a name starts with a letter and has only letters, digits and single underscores"


@functools.cache
def _name_pattern() -> str:
    return load_schema()["$defs"]["name"]["pattern"]


def __getattr__(name: str) -> Any:
    # NAME_PATTERN: the pattern every configured name must match (``$defs/name`` of the shipped
    # schema, defined there once); read on first use, so that importing this module (every
    # job script does) does not load the schema package
    if name == "NAME_PATTERN":
        return _name_pattern()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _key_path(path: Iterable[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<root>"


def _fill_defaults(instance: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> None:
    """Recursively insert schema defaults for missing object properties."""
    if "$ref" in schema:
        ref = schema["$ref"]
        node: Any = root
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        _fill_defaults(instance, node, root)
        return
    if isinstance(instance, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                _fill_defaults(instance[key], sub, root)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in instance:
                if key not in schema.get("properties", {}):
                    _fill_defaults(instance[key], extra, root)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for item in instance:
            _fill_defaults(item, schema["items"], root)


def _schema_error_message(err: jsonschema.ValidationError) -> str:
    path = list(err.absolute_path)
    if err.validator == "pattern" and err.validator_value == _name_pattern():
        # a mapping key (propertyNames) is reported at the mapping it is a key of
        what = "key " if "propertyNames" in err.relative_schema_path else ""
        return f"config key '{_key_path(path)}': {what}{err.message} ({NAME_RULE}; names become parts of file paths)"
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        keys = ", ".join(_key_path(path + [k]) for k in extra)
        return f"config key(s) {keys}: unknown key (allowed: {', '.join(sorted(err.schema.get('properties', {})))})"
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return f"config key '{_key_path(path + [missing])}': required key is missing"
    return f"config key '{_key_path(path)}': {err.message}"


def validate_schema(cfg: dict[str, Any], schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate against the JSON schema and fill defaults (returns a new dict)."""
    schema = schema or load_schema()
    cfg = copy.deepcopy(dict(cfg))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        raise ConfigError(_schema_error_message(errors[0]))
    _fill_defaults(cfg, schema, schema)
    return cfg


# ------------------------------------------------------------------ semantic checks


def _unique(items: list[dict[str, Any]], section: str) -> dict[str, int]:
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item["name"] in seen:
            raise ConfigError(f"config key '{section}[{i}].name': duplicate name '{item['name']}'")
        seen[item["name"]] = i
    return seen


def _check_expr(text: Any, key: str, allowed: set[str] | None = None) -> None:
    try:
        parse(str(text), allowed_names=allowed)
    except ExpressionError as err:
        raise ConfigError(f"config key '{key}': {err}") from None


def _check_directory(value: str, key: str) -> None:
    """A relative directory the workflow writes to must stay inside the working directory."""
    if Path(value).is_absolute():
        return
    if ".." in re.split(r"[/\\]", value):
        raise ConfigError(
            f"config key '{key}': relative path {value!r} contains '..'; the workflow writes only "
            "inside the working directory unless the path is absolute"
        )


def _check_semantics(cfg: dict[str, Any]) -> None:
    for keys in OUTPUT_DIRS:
        node: Any = cfg
        for k in keys:
            node = node.get(k) if isinstance(node, Mapping) else None
        if isinstance(node, str):
            _check_directory(node, ".".join(keys))

    samples = _unique(cfg["samples"], "samples")
    _unique(cfg["systematics"], "systematics")
    features = _unique(cfg["features"], "features")
    _unique(cfg["regions"], "regions")

    data = [s["name"] for s in cfg["samples"] if s["type"] == "data"]
    if len(data) > 1:
        raise ConfigError(f"config key 'samples': at most one sample may have type 'data', found {data}")
    basis = [s["name"] for s in cfg["samples"] if s["type"] == "basis"]
    if not basis:
        raise ConfigError("config key 'samples': at least one sample must have type 'basis'")

    for i, s in enumerate(cfg["samples"]):
        if "tree" not in s and "tree" not in cfg["input"]:
            raise ConfigError(
                f"config key 'samples[{i}].tree': sample '{s['name']}' names no tree; give it one, or give "
                "input.tree for every sample without one"
            )
        _check_expr(s["weight"], f"samples[{i}].weight")
        if "selection" in s:
            _check_expr(s["selection"], f"samples[{i}].selection")
    for i, f in enumerate(cfg["features"]):
        _check_expr(f.get("expr", f["name"]), f"features[{i}].expr")
    _check_expr(cfg["preselection"], "preselection")

    rc = cfg.get("region_classifier")
    scores = set()
    if rc:
        seen: dict[str, str] = {}
        for cls, members in rc["classes"].items():
            scores.add(f"score_{cls}")
            for j, name in enumerate(members):
                key = f"region_classifier.classes.{cls}[{j}]"
                if name not in samples or cfg["samples"][samples[name]]["type"] == "data":
                    raise ConfigError(f"config key '{key}': not a Monte Carlo sample: '{name}'")
                if name in seen:
                    raise ConfigError(f"config key '{key}': sample '{name}' is already in class '{seen[name]}'")
                seen[name] = cls
        for j, name in enumerate(rc.get("features", [])):
            if name not in features:
                raise ConfigError(f"config key 'region_classifier.features[{j}]': unknown feature '{name}'")
    region_names = set(features) | scores
    for i, r in enumerate(cfg["regions"]):
        _check_expr(r["selection"], f"regions[{i}].selection", allowed=region_names)
        if r["type"] == "binned":
            for key in ("observable", "binning"):
                if key not in r:
                    raise ConfigError(f"config key 'regions[{i}].{key}': required for a binned region")
            _check_expr(r["observable"], f"regions[{i}].observable", allowed=set(features))
            edges = bin_edges(r["binning"])
            if any(b <= a for a, b in zip(edges, edges[1:])):
                raise ConfigError(f"config key 'regions[{i}].binning': bin edges must increase strictly")
            for j, name in enumerate(r.get("samples", [])):
                if name not in samples or cfg["samples"][samples[name]]["type"] == "data":
                    mc = ", ".join(s["name"] for s in cfg["samples"] if s["type"] != "data")
                    raise ConfigError(
                        f"config key 'regions[{i}].samples[{j}]': '{name}' is not an MC sample (MC samples: {mc})"
                    )
        else:
            for key in ("observable", "binning"):
                if key in r:
                    raise ConfigError(f"config key 'regions[{i}].{key}': only allowed for binned regions")
            if "samples" in r:
                raise ConfigError(
                    f"config key 'regions[{i}].samples': only allowed for binned regions (an unbinned region "
                    "models every MC sample: the ratios r_c are trained on its events)"
                )

    for i, syst in enumerate(cfg["systematics"]):
        key = f"systematics[{i}]"
        for j, name in enumerate(syst.get("samples", [])):
            if name not in samples:
                raise ConfigError(f"config key '{key}.samples[{j}]': unknown sample '{name}'")
            if cfg["samples"][samples[name]]["type"] == "data":
                raise ConfigError(f"config key '{key}.samples[{j}]': systematics cannot apply to data")
        dirs = [d for d in DIRECTIONS if d in syst]
        if not dirs:
            raise ConfigError(f"config key '{key}': needs 'up' and/or 'down'")
        if len(dirs) == 1 and not syst["symmetrize"]:
            raise ConfigError(f"config key '{key}': only '{dirs[0]}' given; add the other or set symmetrize: true")
        wanted = {"weight": {"weight"}, "tree": {"files", "tree"}, "norm": {"norm"}}[syst["type"]]
        for d in dirs:
            given = set(syst[d])
            if not given or not given <= wanted:
                raise ConfigError(
                    f"config key '{key}.{d}': a '{syst['type']}' systematic takes "
                    f"{' and/or '.join(sorted(wanted))}, got {sorted(given) or 'nothing'}"
                )
            if "weight" in syst[d]:
                _check_expr(syst[d]["weight"], f"{key}.{d}.weight")

    m = cfg["morphing"]
    if "poi_label" in m and len(re.findall(r"(?<!\\)\$", m["poi_label"])) % 2:
        raise ConfigError(
            f"config key 'morphing.poi_label': {m['poi_label']!r} has an unmatched '$' (math text is "
            "written between two '$', e.g. '$c_W$'; a literal dollar sign is '\\$')"
        )
    lo, hi = m["poi_bounds"]
    if not lo < hi:
        raise ConfigError("config key 'morphing.poi_bounds': lower bound must be below upper bound")
    poi_names = [p["name"] for p in m["pois"]]
    _unique(m["pois"], "morphing.pois")
    for j, p in enumerate(m["pois"]):
        lo, hi = p["bounds"]
        if not lo < hi:
            raise ConfigError(f"config key 'morphing.pois[{j}].bounds': lower bound must be below upper bound")
        if not lo <= p["init"] <= hi:
            raise ConfigError(f"config key 'morphing.pois[{j}].init': {p['init']} is outside its bounds [{lo}, {hi}]")
        if p["name"] in {s["name"] for s in cfg["systematics"]}:
            raise ConfigError(
                f"config key 'morphing.pois[{j}].name': '{p['name']}' is also the name of a systematic "
                "(both become parameters of the likelihood)"
            )
    allowed = set(poi_names)
    if "coefficients" not in m and "basis" not in m:
        raise ConfigError("config key 'morphing': give either 'coefficients' or 'basis'")
    if "basis" in m:
        for j, text in enumerate(m["basis"]["functions"]):
            _check_expr(text, f"morphing.basis.functions[{j}]", allowed=allowed)
        for name, point in m["basis"]["points"].items():
            if name not in samples or cfg["samples"][samples[name]]["type"] != "basis":
                raise ConfigError(f"config key 'morphing.basis.points.{name}': not a basis sample")
            given = sorted(point) if isinstance(point, dict) else None
            if (given or poi_names[:1]) != sorted(poi_names) or (given is None) != (len(poi_names) == 1):
                raise ConfigError(
                    f"config key 'morphing.basis.points.{name}': give "
                    + ("the POI value" if len(poi_names) == 1 else f"a value of every POI {sorted(poi_names)}")
                )
        try:
            derived = coefficients_from_points(
                m["basis"]["functions"], m["basis"]["points"], poi_names if len(poi_names) > 1 else m["poi"]
            )
        except MorphingError as err:
            raise ConfigError(f"config key 'morphing.basis': {err}") from None
        # a validated config carries both (validation is idempotent); a user gives one
        if m.get("coefficients", derived) != derived:
            raise ConfigError("config key 'morphing': give either 'coefficients' or 'basis', not both")
        m["coefficients"] = derived
    for name, text in m["coefficients"].items():
        kind = cfg["samples"][samples[name]]["type"] if name in samples else None
        if kind == "background":
            raise ConfigError(
                f"config key 'morphing.coefficients.{name}': '{name}' has type 'background', whose "
                "coefficient is 1 by definition; remove the entry, or give the sample type 'basis' "
                "if its yield depends on the POI"
            )
        if kind != "basis":
            raise ConfigError(f"config key 'morphing.coefficients.{name}': not a basis sample")
        _check_expr(text, f"morphing.coefficients.{name}", allowed=allowed)
    used = set().union(*(parse(str(t)).names for t in m["coefficients"].values())) if m["coefficients"] else set()
    for j, name in enumerate(poi_names):
        if name not in used:
            raise ConfigError(
                f"config key 'morphing.pois[{j}]': POI '{name}' enters no morphing coefficient, so no fit "
                "could measure it"
            )

    tr = cfg["training"]
    for j, name in enumerate(tr.get("features", [])):
        if name not in features:
            raise ConfigError(f"config key 'training.features[{j}]': unknown feature '{name}'")
    for name in tr.get("reference", {}):
        if name not in samples or cfg["samples"][samples[name]]["type"] == "data":
            raise ConfigError(f"config key 'training.reference.{name}': not a Monte Carlo sample")
    if tr["members"] < tr["folds"]:
        # member m never sees fold m % folds, which it alone evaluates: every fold needs one
        raise ConfigError(
            f"config key 'training.members': {tr['members']} member(s) for {tr['folds']} folds; every fold needs "
            "a member that did not train on it (members >= training.folds)"
        )

    pois = {p["name"]: p for p in m["pois"]}
    for j, p in enumerate(m["pois"]):
        if "scan" in p and not p["scan"]["low"] < p["scan"]["high"]:
            raise ConfigError(f"config key 'morphing.pois[{j}].scan': low must be below high")
    pairs = set()
    for j, s2 in enumerate(cfg["fit"]["scan2d"]):
        a, b = _check_poi_pair(s2, f"fit.scan2d[{j}]", pois)
        if (a, b) in pairs or (b, a) in pairs:
            raise ConfigError(f"config key 'fit.scan2d[{j}].pois': {[a, b]} is not a new pair of two different POIs")
        pairs.add((a, b))

    val = cfg["validation"]
    for j, value in enumerate(val["learned"]["audit"]["points"]):
        if not val["grid"]["low"] <= value <= val["grid"]["high"]:
            raise ConfigError(
                f"config key 'validation.learned.audit.points[{j}]': {value} is outside the range "
                f"[{val['grid']['low']}, {val['grid']['high']}] of validation.grid"
            )
    if val["kind"] == "focused":
        if "focus" not in val:
            raise ConfigError("config key 'validation.focus': required by validation.kind focused")
        from .focused import FocusDensity

        try:  # the 1-D construction's POI is the first one
            FocusDensity.from_config(val["focus"], m["pois"][0]["bounds"])
        except ValueError as err:
            reason = str(err).removeprefix("validation.focus: ")
            raise ConfigError(f"config key 'validation.focus': {reason}") from err
    if val["method"] == "quantile_regression" and val["kind"] == "q":
        raise ConfigError(
            "config key 'validation.method': quantile_regression learns the two-sided t or the focused "
            "statistic (validation.kind: t or focused), not the one-sided q"
        )
    r2 = cfg["validation"].get("region2d")
    if r2 is not None:
        _check_poi_pair(r2, "validation.region2d", pois)
        for j, point in enumerate(r2["learned"]["audit"]["points"]):
            for axis, v in zip("xy", point):
                if not r2[axis]["low"] <= v <= r2[axis]["high"]:
                    raise ConfigError(
                        f"config key 'validation.region2d.learned.audit.points[{j}]': {v} is outside the range "
                        f"[{r2[axis]['low']}, {r2[axis]['high']}] of validation.region2d.{axis}"
                    )
        for j, point in enumerate(r2["coverage"]["points"]):
            for axis, v in zip("xy", point):
                if not np.any(np.isclose(grid_values(r2[axis]), v, atol=1e-9)):
                    raise ConfigError(
                        f"config key 'validation.region2d.coverage.points[{j}]': {v} is not a node of "
                        f"validation.region2d.{axis}"
                    )

    lim = cfg["fit"]["limits"]
    if lim["enabled"]:
        for j, kind in enumerate(lim["workspaces"]):
            if kind == "oracle" and not cfg["simulation"]["enabled"]:
                raise ConfigError(
                    f"config key 'fit.limits.workspaces[{j}]': the oracle workspace needs the built-in simulator"
                )
        for j, dataset in enumerate(lim["datasets"]):
            if dataset == "observed" and data_sample(cfg) is None:
                raise ConfigError(f"config key 'fit.limits.datasets[{j}]': no sample of type data to set limits with")

    sens = cfg["plots"]["sensitivity"]
    train_features = tr.get("features") or list(features)
    for key in ("x", "y"):
        if key in sens and sens[key] not in train_features:
            raise ConfigError(f"config key 'plots.sensitivity.{key}': '{sens[key]}' is not a training feature")
    for j, value in enumerate(sens["poi_values"]):
        lo, hi = m["poi_bounds"]
        if not lo <= value <= hi:
            raise ConfigError(f"config key 'plots.sensitivity.poi_values[{j}]': {value} is outside morphing.poi_bounds")

    v = cfg["validation"]
    grid = np.linspace(v["grid"]["low"], v["grid"]["high"], v["grid"]["points"])
    for j, value in enumerate(v["coverage"]["poi_true"]):
        if not np.any(np.isclose(grid, value, atol=1e-9)):
            raise ConfigError(
                f"config key 'validation.coverage.poi_true[{j}]': {value} is not a point of "
                f"validation.grid {grid.round(6).tolist()}"
            )
    syst_names = {s["name"] for s in cfg["systematics"]}
    for j, point in enumerate(v["linearity_nuisances"]):
        for name in point:
            if name not in syst_names:
                raise ConfigError(f"config key 'validation.linearity_nuisances[{j}].{name}': not a systematic")
    if cfg["simulation"]["enabled"] and "tree" not in cfg["input"]:
        raise ConfigError("config key 'input.tree': required with simulation.enabled (the tree the simulator writes)")
    sim = cfg["simulation"]
    ew = [p for p in sim["processes"] if p in ("VS", "VB", "VSBI", "VI")]
    if ew and "mu_V" not in sim["data"]:
        raise ConfigError(
            f"config key 'simulation.data.mu_V': required, simulation.processes lists the electroweak "
            f"process(es) {ew}, so the pseudo-data contain the electroweak production at this signal strength"
        )
    if not ew and "mu_V" in sim["data"]:
        raise ConfigError(
            "config key 'simulation.data.mu_V': the pseudo-data have no electroweak production "
            "unless simulation.processes lists one of VS, VB, VSBI, VI"
        )
    if v["workspace"] == "oracle" and not cfg["simulation"]["enabled"]:
        raise ConfigError("config key 'validation.workspace': the oracle workspace needs the built-in simulator")

    hb = cfg["fit"]["histogram_baseline"]
    unbinned = [r["name"] for r in cfg["regions"] if r["type"] == "unbinned"]
    if unbinned and "observable" not in hb:
        raise ConfigError(
            "config key 'fit.histogram_baseline.observable': required, the histogram baseline bins the "
            f"unbinned region(s) {unbinned} in this feature expression (e.g. the invariant mass)"
        )
    if "observable" in hb:
        _check_expr(hb["observable"], "fit.histogram_baseline.observable", allowed=set(features))
    if unbinned and "binning" not in hb:
        raise ConfigError(
            "config key 'fit.histogram_baseline.binning': required, the histogram baseline bins the "
            f"unbinned region(s) {unbinned} in fit.histogram_baseline.observable "
            f"({hb['observable']!r}); give edges or e.g. {{bins: 20, low: 220, high: 1000}}"
        )
    if "binning" in hb:
        edges = bin_edges(hb["binning"])
        if any(b <= a for a, b in zip(edges, edges[1:])):
            raise ConfigError("config key 'fit.histogram_baseline.binning': bin edges must increase strictly")


def _check_poi_pair(entry: Mapping[str, Any], key: str, pois: Mapping[str, Any]) -> tuple[str, str]:
    """``entry`` = ``{pois: [a, b], x: grid, y: grid}`` (a 2-D scan or region): two different
    POIs of ``morphing.pois``, each grid an increasing range inside its POI's bounds."""
    a, b = entry["pois"]
    for k, name in enumerate((a, b)):
        if name not in pois:
            raise ConfigError(f"config key '{key}.pois[{k}]': '{name}' is not one of morphing.pois")
    if a == b:
        raise ConfigError(f"config key '{key}.pois': {[a, b]} is not a pair of two different POIs")
    for axis, name in (("x", a), ("y", b)):
        g, (lo, hi) = entry[axis], pois[name]["bounds"]
        if not lo <= g["low"] < g["high"] <= hi:
            raise ConfigError(
                f"config key '{key}.{axis}': [{g['low']}, {g['high']}] must be an increasing range "
                f"inside the bounds [{lo}, {hi}] of '{name}'"
            )
    return a, b


def _move_renamed_keys(cfg: dict[str, Any]) -> None:
    """Move every old key of :data:`RENAMED_KEYS` that ``cfg`` gives to its new key (in place,
    keeping the position), with a DeprecationWarning naming both; both given: ConfigError."""
    for old, new in RENAMED_KEYS.items():
        parent: Any = cfg
        for k in old[:-1]:
            parent = parent.get(k) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or old[-1] not in parent:
            continue
        old_key, new_key = ".".join(old), ".".join(new)
        if new[-1] in parent:
            raise ConfigError(
                f"config key '{old_key}': renamed to '{new_key}', which is also given; remove '{old_key}'"
            )
        warnings.warn(
            f"config key '{old_key}' is deprecated and will be removed in the next version; "
            f"it was renamed to '{new_key}' (read as '{new_key}' this time)",
            DeprecationWarning,
            stacklevel=caller_stacklevel(),
        )
        items = [(new[-1] if k == old[-1] else k, v) for k, v in parent.items()]
        parent.clear()
        parent.update(items)


def validate(cfg: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate a configuration (schema + semantic checks) and return it with defaults filled.

    Keys renamed in this version (:data:`RENAMED_KEYS`) are read under their old name with a
    DeprecationWarning and returned under the new one."""
    if not isinstance(cfg, Mapping):
        raise ConfigError("config: the top level must be a mapping")
    cfg = copy.deepcopy(dict(cfg))
    _move_renamed_keys(cfg)
    _main_poi_from_list(cfg)
    out = validate_schema(cfg, schema)
    m = out["morphing"]
    if "pois" not in m:
        m["pois"] = [{"name": m["poi"], "init": m["poi_init"], "bounds": list(m["poi_bounds"])}]
        if "poi_label" in m:
            m["pois"][0]["label"] = m["poi_label"]
    _check_semantics(out)
    return out


#: the one-POI keys of ``morphing`` and their entries in a ``morphing.pois`` item
_ONE_POI_KEYS = {"poi": "name", "poi_init": "init", "poi_bounds": "bounds", "poi_label": "label"}
_POI_DEFAULTS = {"init": 1.0, "bounds": [0.0, 10.0]}


def _main_poi_from_list(cfg: dict[str, Any]) -> None:
    """With ``morphing.pois``, set the one-POI keys (``poi``, ``poi_init``, ...) from its first
    entry, the main POI, which the rest of nsbi reads. A user gives one form or the other; a
    validated config carries both, which must agree (validation is idempotent)."""
    m = cfg.get("morphing")
    if not isinstance(m, dict) or not isinstance(m.get("pois"), list) or not m["pois"]:
        return
    first = m["pois"][0]
    if not isinstance(first, dict):
        return  # the schema names the problem
    for key, item in _ONE_POI_KEYS.items():
        if key not in m:
            continue
        value = first.get(item, _POI_DEFAULTS.get(item))
        if m[key] != value:
            raise ConfigError(
                f"config key 'morphing.{key}': give the POIs either as morphing.poi (with poi_init, "
                "poi_bounds, poi_label) or as the list morphing.pois, not both"
            )
    for key, item in _ONE_POI_KEYS.items():
        if item in first or item in _POI_DEFAULTS:
            m[key] = copy.deepcopy(first.get(item, _POI_DEFAULTS.get(item)))


def load(path: str | Path) -> dict[str, Any]:
    """Read a YAML config with ``yaml.safe_load`` and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    with open(path) as fh:
        try:
            raw = yaml.safe_load(fh)
        except yaml.YAMLError as err:
            raise ConfigError(f"config file '{path}': invalid YAML: {err}") from None
    try:
        return validate(raw or {})
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


# ------------------------------------------------------------------ helpers


def bin_edges(binning: Any) -> list[float]:
    if isinstance(binning, Mapping):
        n, lo, hi = binning["bins"], binning["low"], binning["high"]
        return [lo + (hi - lo) * i / n for i in range(n + 1)]
    return [float(b) for b in binning]


def sample(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    for s in cfg["samples"]:
        if s["name"] == name:
            return s
    raise KeyError(f"unknown sample '{name}'")


def systematic(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    for s in cfg["systematics"]:
        if s["name"] == name:
            return s
    raise KeyError(f"unknown systematic '{name}'")


def mc_samples(cfg: Mapping[str, Any]) -> list[str]:
    return [s["name"] for s in cfg["samples"] if s["type"] != "data"]


def basis_samples(cfg: Mapping[str, Any]) -> list[str]:
    """Samples of the morphing: each carries a coefficient f_c(POI) (``morphing``)."""
    return [s["name"] for s in cfg["samples"] if s["type"] == "basis"]


def background_samples(cfg: Mapping[str, Any]) -> list[str]:
    """Samples whose yield does not depend on the POI (coefficient 1). In an unbinned region a
    background is modelled like any other process: its ratio to the reference and its shape
    systematics are learned; it only takes no part in the morphing."""
    return [s["name"] for s in cfg["samples"] if s["type"] == "background"]


def reference_mixture(cfg: Mapping[str, Any]) -> dict[str, float]:
    """The reference p_ref of the ratios: ``training.reference`` {sample: coefficient}, by
    default every Monte Carlo sample (basis and background) with coefficient 1, so that p_ref
    covers the support of every process."""
    ref = cfg.get("training", {}).get("reference") or {s: 1.0 for s in mc_samples(cfg)}
    return {k: float(v) for k, v in ref.items()}


#: config keys that only label plots (sample and region ``label``, ``morphing.poi_label``)
LABEL_KEYS = frozenset({"label", "poi_label"})


def without_labels(obj: Any) -> Any:
    """``obj`` without the plot-label keys (:data:`LABEL_KEYS`) at any depth: what a job that
    computes numbers depends on."""
    if isinstance(obj, Mapping):
        return {k: without_labels(v) for k, v in obj.items() if k not in LABEL_KEYS}
    if isinstance(obj, (list, tuple)):
        return [without_labels(v) for v in obj]
    return obj


def audit_points(cfg: Mapping[str, Any]) -> list[float]:
    """POI values of the audit toys of the learned construction (``validation.learned.audit.points``;
    by default 15 %, 50 % and 85 % of the way through ``validation.grid``)."""
    v = cfg["validation"]
    lo, hi = float(v["grid"]["low"]), float(v["grid"]["high"])
    return [float(p) for p in v["learned"]["audit"]["points"]] or [lo + f * (hi - lo) for f in (0.15, 0.5, 0.85)]


def widened_range(low: float, high: float, margin: float, bounds) -> tuple[float, float]:
    """``[low, high]`` widened on each side by ``margin`` of its width, within ``bounds``."""
    m = float(margin) * (float(high) - float(low))
    return max(float(low) - m, float(bounds[0])), min(float(high) + m, float(bounds[1]))


def learned_range(cfg: Mapping[str, Any]) -> tuple[float, float]:
    """POI range the learned construction's toys are spread over: ``validation.grid``'s range
    widened on each side by ``validation.learned.toys.margin`` of its width, within the POI's
    bounds (a regression is least constrained at the ends of its training range)."""
    v = cfg["validation"]
    bounds = cfg["morphing"]["pois"][0]["bounds"]
    return widened_range(v["grid"]["low"], v["grid"]["high"], v["learned"]["toys"]["margin"], bounds)


def region2d_box(cfg: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    """The box the learned 2-D construction's toys are spread over: the ranges of
    ``validation.region2d.x`` and ``.y``, each widened by ``learned.toys.margin`` of its width on
    both sides, within the POIs' bounds."""
    r2 = cfg["validation"]["region2d"]
    bounds = {p["name"]: p["bounds"] for p in cfg["morphing"]["pois"]}
    margin = r2["learned"]["toys"]["margin"]
    ranges = [widened_range(r2[a]["low"], r2[a]["high"], margin, bounds[n]) for a, n in zip("xy", r2["pois"])]
    return [r[0] for r in ranges], [r[1] for r in ranges]


def region2d_audit_points(cfg: Mapping[str, Any]) -> list[list[float]]:
    """Points of the learned 2-D construction's audit toys (``validation.region2d.learned.audit.points``;
    by default the centre of the x by y box and the points at 25 % and 75 % of both ranges)."""
    r2 = cfg["validation"]["region2d"]
    pts = r2["learned"]["audit"]["points"]
    if pts:
        return [[float(a), float(b)] for a, b in pts]
    x, y = (r2[a] for a in "xy")
    return [[x["low"] + f * (x["high"] - x["low"]), y["low"] + f * (y["high"] - y["low"])] for f in (0.5, 0.25, 0.75)]


def grid_values(g: Mapping[str, Any]) -> list[float]:
    """The points of a grid ``{low, high, points}``."""
    return [float(v) for v in np.linspace(g["low"], g["high"], g["points"])]


def poi_names(cfg: Mapping[str, Any]) -> list[str]:
    """The POIs of a validated config, the main one first (``morphing.pois``)."""
    return [p["name"] for p in cfg["morphing"]["pois"]]


def poi_inits(cfg: Mapping[str, Any], **values: float) -> dict[str, float]:
    """Every POI at its ``init``, those named in ``values`` at the given value."""
    out = {p["name"]: float(p["init"]) for p in cfg["morphing"]["pois"]}
    for name, v in values.items():
        if name not in out:
            raise KeyError(f"{name!r} is not a POI of the config ({sorted(out)})")
        out[name] = float(v)
    return out


def poi_labels(cfg: Mapping[str, Any]) -> dict[str, str]:
    """Plot label of every POI (its ``label``, else derived from the name as :func:`poi_label`)."""
    from .plotting.labels import default_poi_label

    return {p["name"]: str(p.get("label") or default_poi_label(p["name"])) for p in cfg["morphing"]["pois"]}


def poi_label(cfg: Mapping[str, Any]) -> str:
    """Plot label of the POI: ``morphing.poi_label`` (LaTeX / matplotlib mathtext, e.g.
    ``"$c_W$"``), by default derived from ``morphing.poi`` by
    :func:`nsbi.plotting.labels.default_poi_label` (``mu`` -> ``$\\mu$``; a Greek letter name
    -> that letter; any other name as plain text)."""
    from .plotting.labels import default_poi_label

    m = cfg["morphing"]
    return str(m.get("poi_label") or default_poi_label(m["poi"]))


def data_label(cfg: Mapping[str, Any]) -> str | None:
    """Legend label of the data sample: its ``label``, else its name (None without data)."""
    name = data_sample(cfg)
    return None if name is None else str(sample(cfg, name).get("label", name))


def data_sample(cfg: Mapping[str, Any]) -> str | None:
    names = [s["name"] for s in cfg["samples"] if s["type"] == "data"]
    return names[0] if names else None


def affects(syst: Mapping[str, Any], sample_name: str, cfg: Mapping[str, Any]) -> bool:
    if "samples" in syst:
        return sample_name in syst["samples"]
    return sample(cfg, sample_name)["type"] != "data"


def shape_systematics(cfg: Mapping[str, Any], sample_name: str) -> list[str]:
    """Systematics that need their own prepared events (weight- and tree-based)."""
    return [s["name"] for s in cfg["systematics"] if s["type"] in ("weight", "tree") and affects(s, sample_name, cfg)]


def variations(cfg: Mapping[str, Any], sample_name: str) -> list[str]:
    """Variation names prepared for a sample: 'nominal' plus '<syst>_<dir>' per direction given."""
    out = [NOMINAL]
    for name in shape_systematics(cfg, sample_name):
        syst = systematic(cfg, name)
        out += [f"{name}_{d}" for d in DIRECTIONS if d in syst]
    return out


def split_variation(variation: str) -> tuple[str | None, str | None]:
    if variation == NOMINAL:
        return None, None
    name, _, direction = variation.rpartition("_")
    if direction not in DIRECTIONS or not name:
        raise ValueError(f"bad variation name '{variation}'")
    return name, direction


def _index(items: list[dict[str, Any]], name: str) -> int:
    return next(i for i, item in enumerate(items) if item["name"] == name)


def variation_inputs(cfg: Mapping[str, Any], sample_name: str, variation: str) -> dict[str, Any]:
    """Files, tree and weight expression of one (sample, variation), as plain sorted data.

    The ``*_key`` entries name the config key each value came from (for error messages).
    """
    s = sample(cfg, sample_name)
    i = _index(cfg["samples"], sample_name)
    spec = {
        "files": list(s["files"]),
        "files_key": f"samples[{i}].files",
        "tree": s.get("tree", cfg["input"]["tree"]),
        "tree_key": f"samples[{i}].tree" if "tree" in s else "input.tree",
        "weight": str(s["weight"]),
        "weight_key": f"samples[{i}].weight",
        "selection": str(s.get("selection", "1 > 0")),
        "selection_key": f"samples[{i}].selection",
    }
    name, direction = split_variation(variation)
    if name is not None:
        var = systematic(cfg, name)[direction]
        key = f"systematics[{_index(cfg['systematics'], name)}].{direction}"
        if "weight" in var:
            spec["weight"], spec["weight_key"] = str(var["weight"]), f"{key}.weight"
        if "files" in var:
            spec["files"] = [f.replace("{sample}", sample_name) for f in var["files"]]
            spec["files_key"] = f"{key}.files"
        if "tree" in var:
            spec["tree"], spec["tree_key"] = var["tree"], f"{key}.tree"
    return spec


def region_samples(cfg: Mapping[str, Any], region: str) -> list[str]:
    """The MC samples modelled in ``region``, in config order: ``regions[].samples`` of a
    binned region, by default every MC sample."""
    r = next(r for r in cfg["regions"] if r["name"] == region)
    listed = set(r.get("samples") or mc_samples(cfg))
    return [s for s in mc_samples(cfg) if s in listed]


def prep_targets(cfg: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """All (region, process, variation) triples of the data-preparation stage: the samples
    of each region (:func:`region_samples`) and the data."""
    out = []
    for region in cfg["regions"]:
        names = set(region_samples(cfg, region["name"])) | {data_sample(cfg)}
        for s in cfg["samples"]:
            if s["name"] in names:
                for var in variations(cfg, s["name"]):
                    out.append((region["name"], s["name"], var))
    return out


def limit_targets(cfg: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(workspace, dataset) pairs of the CLs limits (``fit.limits``; none when not enabled)."""
    lim = cfg["fit"]["limits"]
    return [(k, d) for k in lim["workspaces"] for d in lim["datasets"]] if lim["enabled"] else []


def select_targets(cfg: Mapping[str, Any]) -> list[tuple[str, str]]:
    """All (process, variation) pairs of the selection stage (before the region split)."""
    return [(s["name"], var) for s in cfg["samples"] for var in variations(cfg, s["name"])]


def results_dir(cfg: Mapping[str, Any]) -> str:
    return f"{cfg['output_dir']}/{cfg['analysis']}"
