"""nsbi workspaces: versioned JSON + hashed per-event side files; pyhf import/export; builders.

Layout (schema ``nsbi/schemas/workspace-1.0.0.json``)::

    {"version": "1.0.0",
     "channels": [ {"name": "SR_hist", "type": "binned", "samples": [pyhf-like samples
                      (+ optional "morphing": "<expression>")]},
                   {"name": "SR", "type": "unbinned", "samples": [
                      {"name": "S", "yield": 12.3, "morphing": "mu - sqrt(mu)",
                       "modifiers": [{"name": "lumi", "type": "lumi"},
                                     {"name": "kfactor", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
                                     {"name": "LES", "type": "eventsys"}]}]} ],
     "observations": [ {"name": "asimov", "channels": [
                           {"name": "SR_hist", "data": [...]},
                           {"name": "SR", "events": {"path": "ws.asimov.SR.npz", "sha256": "...",
                                                     "format": "npz"}}]}, ... ],
     "measurements": [ {"name": "meas", "config": {"poi": "mu", "parameters": [...]}} ]}

Per-event side files hold the columns ``weight``, ``logr_{process}`` and
``logr_{process}__{syst}_up`` / ``_down`` (see :func:`nsbi.model.event_columns`); they are
npz (read with ``allow_pickle=False``) or parquet, referenced by a path relative to the JSON
file and verified against their sha256 on load.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_path, caller_stacklevel, copy_json, jsonable, write_json

__all__ = [
    "Workspace",
    "WorkspaceError",
    "load",
    "save",
    "validate",
    "schema",
    "to_pyhf",
    "from_pyhf",
    "build_workspace",
    "binned_channel_from_histograms",
    "read_events",
    "sha256_file",
    "SCHEMA_VERSION",
]

SCHEMA_VERSION = "1.0.0"


class WorkspaceError(ValueError):
    """Invalid workspace (schema, consistency, side-file hash)."""


# ---------------------------------------------------------------------------- schema
_SCHEMA_CACHE: dict[str, dict] = {}


def schema(version: str = SCHEMA_VERSION) -> dict:
    if version not in _SCHEMA_CACHE:
        ref = resources.files("nsbi.schemas").joinpath(f"workspace-{version}.json")
        if not ref.is_file():
            raise WorkspaceError(f"unknown workspace schema version {version!r}")
        _SCHEMA_CACHE[version] = json.loads(ref.read_text())
    return _SCHEMA_CACHE[version]


def _where(path) -> str:
    out = "$"
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


_FAST_VALIDATORS: dict[str, Any] = {}


def schema_accepts(
    key: str, schema_doc: Mapping, instance: Any, handlers: Mapping | None = None, sources: Sequence = ()
) -> bool:
    """Whether ``instance`` is valid under ``schema_doc``, by a check that fastjsonschema
    compiles once per ``key`` and process and keeps in the user cache
    (:func:`nsbi.user_cache.compiled_schema_check`; ``handlers``: loaders of referenced schema
    URIs, whose documents go in ``sources``).

    Only the answer is used: a workspace the fast validator rejects is validated again by
    jsonschema, whose errors (JSON path, best match) are the ones reported. jsonschema alone
    needs about 1 s for a 100-parameter published likelihood (every modifier through seven
    if/then branches), which dominated a command-line fit; the compiled check takes 0.08 s."""
    import fastjsonschema

    from nsbi.user_cache import compiled_schema_check

    if key not in _FAST_VALIDATORS:
        _FAST_VALIDATORS[key] = compiled_schema_check(key, schema_doc, handlers, sources)
    try:
        _FAST_VALIDATORS[key](instance)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def validate(spec: Mapping, source: str = "workspace") -> None:
    """Validate against the JSON schema and check cross-references.

    Raises :class:`WorkspaceError` naming the offending key (JSON path) and the problem.
    """
    if not isinstance(spec, Mapping):
        raise WorkspaceError(f"{source}: top level must be a JSON object")
    version = spec.get("version")
    if version != SCHEMA_VERSION:
        raise WorkspaceError(f"{source}: at $.version: unsupported version {version!r} (expected {SCHEMA_VERSION!r})")
    if not schema_accepts(f"nsbi-workspace-{version}", schema(version), spec):  # explain the rejection
        import jsonschema

        v = jsonschema.Draft202012Validator(schema(version))
        errors = sorted(
            v.iter_errors(spec), key=lambda e: (len(list(e.absolute_path)), list(map(str, e.absolute_path)))
        )
        if errors:
            best = jsonschema.exceptions.best_match(errors)
            deepest = max(errors, key=lambda e: len(list(e.absolute_path)))
            e = deepest if len(list(deepest.absolute_path)) > len(list(best.absolute_path)) else best
            more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
            raise WorkspaceError(f"{source}: at {_where(e.absolute_path)}: {e.message}{more}")
    _check_consistency(spec, source)


def _check_consistency(spec: Mapping, source: str) -> None:
    chans = {}
    for i, ch in enumerate(spec["channels"]):
        if ch["name"] in chans:
            raise WorkspaceError(f"{source}: at $.channels[{i}].name: duplicate channel {ch['name']!r}")
        chans[ch["name"]] = ch
        if ch["type"] == "binned":
            nb = len(ch["samples"][0]["data"])
            for j, s in enumerate(ch["samples"]):
                where = f"$.channels[{i}].samples[{j}]"
                if len(s["data"]) != nb:
                    raise WorkspaceError(f"{source}: at {where}.data: {len(s['data'])} bins, channel has {nb}")
                for k, m in enumerate(s["modifiers"]):
                    d = m.get("data")
                    lens = []
                    if m["type"] == "histosys":
                        lens = [("hi_data", len(d["hi_data"])), ("lo_data", len(d["lo_data"]))]
                    elif m["type"] in ("staterror", "shapesys"):
                        lens = [("data", len(d))]
                    for key, n in lens:
                        if n != nb:
                            raise WorkspaceError(
                                f"{source}: at {where}.modifiers[{k}] ({m['name']!r}): {key} has {n} bins, channel has {nb}"
                            )
    names = set()
    for i, ds in enumerate(spec["observations"]):
        if ds["name"] in names:
            raise WorkspaceError(f"{source}: at $.observations[{i}].name: duplicate dataset {ds['name']!r}")
        names.add(ds["name"])
        seen = set()
        for j, c in enumerate(ds["channels"]):
            where = f"$.observations[{i}].channels[{j}]"
            ch = chans.get(c["name"])
            if ch is None:
                raise WorkspaceError(f"{source}: at {where}.name: unknown channel {c['name']!r}")
            seen.add(c["name"])
            if ch["type"] == "binned":
                if "data" not in c:
                    raise WorkspaceError(f"{source}: at {where}: binned channel {c['name']!r} needs 'data'")
                if len(c["data"]) != len(ch["samples"][0]["data"]):
                    raise WorkspaceError(f"{source}: at {where}.data: wrong number of bins for channel {c['name']!r}")
            elif "events" not in c:
                raise WorkspaceError(f"{source}: at {where}: unbinned channel {c['name']!r} needs 'events'")
        missing = set(chans) - seen
        if missing:
            raise WorkspaceError(
                f"{source}: at $.observations[{i}]: dataset {ds['name']!r} lacks channels {sorted(missing)}"
            )
    mnames = [m["name"] for m in spec["measurements"]]
    if len(set(mnames)) != len(mnames):
        raise WorkspaceError(f"{source}: at $.measurements: duplicate measurement names")


# ---------------------------------------------------------------------------- side files
def sha256_file(path: str | os.PathLike, bufsize: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(bufsize)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def read_events(
    path: str | os.PathLike, fmt: str | None = None, columns: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Read a per-event table (npz without pickle, or parquet) into float arrays."""
    path = Path(path)
    fmt = fmt or ("parquet" if path.suffix == ".parquet" else "npz")
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as z:
            names = columns or list(z.files)
            return {k: np.asarray(z[k], dtype=float) for k in names}
    if fmt == "parquet":
        import pyarrow.parquet as pq
        import pyarrow.types as pat

        t = pq.read_table(path, columns=list(columns) if columns else None)
        out = {}
        for k in t.column_names:
            col = t.column(k)
            if pat.is_floating(col.type) or pat.is_integer(col.type) or pat.is_boolean(col.type):
                out[k] = col.to_numpy().astype(float, copy=False)
        return out
    raise WorkspaceError(f"unknown side-file format {fmt!r} for {path}")


def _write_events(path: Path, arrays: Mapping[str, Any], fmt: str) -> None:
    cols = {k: np.ascontiguousarray(np.asarray(v, dtype=float)) for k, v in arrays.items()}
    n = {v.shape for v in cols.values()}
    if len(n) != 1 or len(next(iter(n))) != 1:
        raise WorkspaceError(f"{path}: all per-event columns must be 1-d with equal length, got shapes {n}")
    if fmt not in ("npz", "parquet"):
        raise WorkspaceError(f"unknown side-file format {fmt!r}")
    with atomic_path(path) as tmp:
        if fmt == "npz":
            with open(tmp, "wb") as f:
                np.savez(f, **cols)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table(cols), tmp)


# ---------------------------------------------------------------------------- Workspace
class Workspace:
    """A validated workspace spec plus access to its per-event arrays.

    ``events`` maps (dataset, channel) -> in-memory column dict for datasets not (yet)
    backed by files (as produced by :func:`build_workspace`); file-backed arrays are read
    lazily (hash already verified by :func:`load`).
    """

    def __init__(
        self,
        spec: Mapping,
        base_dir: str | os.PathLike = ".",
        events: Mapping | None = None,
        validate_spec: bool = True,
    ):
        self.spec = copy_json(dict(spec))
        self.base_dir = Path(base_dir)
        self._events: dict[tuple[str, str], dict[str, np.ndarray]] = dict(events or {})
        if validate_spec:
            validate(self.spec)

    # ---- accessors
    @property
    def channels(self) -> list[str]:
        return [c["name"] for c in self.spec["channels"]]

    @property
    def datasets(self) -> list[str]:
        return [d["name"] for d in self.spec["observations"]]

    @property
    def measurements(self) -> list[str]:
        return [m["name"] for m in self.spec["measurements"]]

    def channel(self, name: str) -> dict:
        for c in self.spec["channels"]:
            if c["name"] == name:
                return c
        raise KeyError(f"unknown channel {name!r}; known: {self.channels}")

    def measurement(self, name: str | None = None) -> dict:
        ms = self.spec["measurements"]
        if name is None:
            return ms[0]
        for m in ms:
            if m["name"] == name:
                return m
        raise KeyError(f"unknown measurement {name!r}; known: {self.measurements}")

    def dataset(self, name: str | None = None) -> dict:
        obs = self.spec["observations"]
        if name is None:
            for d in obs:
                if d["name"] == "observed":
                    return d
            return obs[0]
        for d in obs:
            if d["name"] == name:
                return d
        raise KeyError(f"unknown dataset {name!r}; known: {self.datasets}")

    def events(self, dataset: str, channel: str) -> dict[str, np.ndarray]:
        key = (dataset, channel)
        if key not in self._events:
            ref = next((c for c in self.dataset(dataset)["channels"] if c["name"] == channel), None)
            if ref is None or "events" not in ref:
                raise KeyError(f"dataset {dataset!r} has no events for channel {channel!r}")
            ev = ref["events"]
            self._events[key] = read_events(self.base_dir / ev["path"], ev["format"])
        return self._events[key]

    def observations(self, dataset: str | None = None) -> dict[str, Any]:
        ds = self.dataset(dataset)
        out: dict[str, Any] = {}
        for c in ds["channels"]:
            out[c["name"]] = c["data"] if "data" in c else self.events(ds["name"], c["name"])
        return out

    def model(
        self,
        dataset: str | None = None,
        measurement: str | None = None,
        channels: Sequence[str] | None = None,
        backend: str = "auto",
    ):
        """Build a :class:`nsbi.model.Model` for ``dataset`` (default "observed" or first);
        ``backend`` as in :class:`~nsbi.model.Model`."""
        from nsbi.model import Model

        spec = self.spec
        if channels is not None:
            spec = dict(spec, channels=[c for c in spec["channels"] if c["name"] in channels])
        ds = self.dataset(dataset)
        obs = {}
        for c in ds["channels"]:
            if channels is not None and c["name"] not in channels:
                continue
            obs[c["name"]] = c["data"] if "data" in c else self.events(ds["name"], c["name"])
        return Model(spec, obs, self.measurement(measurement), backend=backend)

    def __repr__(self) -> str:
        return f"Workspace(channels={self.channels}, datasets={self.datasets}, measurements={self.measurements})"


def load(path: str | os.PathLike, verify: bool = True) -> Workspace:
    """Load and validate a workspace JSON; verify side-file sha256 hashes (``verify``)."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise WorkspaceError(f"{path}: not valid JSON: {e}") from None
    validate(spec, source=str(path))
    base = path.parent
    if verify:
        for ds in spec["observations"]:
            for c in ds["channels"]:
                if "events" not in c:
                    continue
                ev = c["events"]
                f = base / ev["path"]
                if not f.is_file():
                    raise WorkspaceError(
                        f"{path}: side file {f} (dataset {ds['name']!r}, channel {c['name']!r}) not found"
                    )
                h = sha256_file(f)
                if h != ev["sha256"]:
                    raise WorkspaceError(
                        f"{path}: sha256 mismatch for side file {f} (dataset {ds['name']!r}, channel {c['name']!r}): "
                        f"expected {ev['sha256']}, found {h}"
                    )
    return Workspace(spec, base_dir=base, validate_spec=False)


def save(ws: Workspace, path: str | os.PathLike, fmt: str = "npz") -> Path:
    """Write the workspace JSON and its per-event side files next to it.

    Side files are named ``{stem}.{dataset}.{channel}.{fmt}``; paths stored are relative to
    the JSON file, hashes are recomputed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = copy.deepcopy(ws.spec)
    stem = path.name[: -len(".json")] if path.name.endswith(".json") else path.name
    for ds in spec["observations"]:
        for c in ds["channels"]:
            if "events" not in c and ws.channel(c["name"])["type"] != "unbinned":
                continue
            arrays = ws.events(ds["name"], c["name"])
            name = f"{stem}.{ds['name']}.{c['name']}.{fmt}"
            f = path.parent / name
            _write_events(f, arrays, fmt)
            c.pop("data", None)
            c["events"] = {
                "path": name,
                "sha256": sha256_file(f),
                "format": fmt,
                "n_events": int(len(next(iter(arrays.values())))),
            }
    # validate what is written: non-finite numbers become null (strict JSON) and fail here
    spec = jsonable(spec)
    validate(spec, source=str(path))
    return write_json(spec, path, indent=1, sort_keys=False)


# ---------------------------------------------------------------------------- pyhf
_PYHF_SETTINGS = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}


def _pyhf_observations(spec: Mapping, source: str) -> tuple[list[dict], list[str]]:
    """The observations of a pyhf workspace that its model uses, as pyhf reads them, and the
    names of those it ignores.

    pyhf (``Workspace.data``) looks the observation of each channel of the model up by name:
    observations of channels that are not in the model are ignored (published patches remove
    validation-region channels but leave their observations); of several observations with
    one name the last is used. A channel without an observation is an error in pyhf (a
    ``KeyError`` when the data are built), as is a wrong total number of bins (when the
    likelihood is evaluated); here each channel's number of bins is checked.
    """
    chans = {c["name"]: len(c["samples"][0]["data"]) if c["samples"] else 0 for c in spec["channels"]}
    by_name: dict[str, tuple[int, dict]] = {}
    ignored: list[str] = []
    duplicated: list[str] = []
    for i, o in enumerate(spec["observations"]):
        if o["name"] not in chans:
            if o["name"] not in ignored:
                ignored.append(o["name"])
            continue
        if o["name"] in by_name and o["name"] not in duplicated:
            duplicated.append(o["name"])
        by_name[o["name"]] = (i, o)
    missing = [c for c in chans if c not in by_name]
    if missing:
        raise WorkspaceError(
            f"{source}: no observation for channel(s) {missing} (pyhf cannot build the data either); "
            f"observations: {[o['name'] for o in spec['observations']]}"
        )
    for name, (i, o) in by_name.items():
        if len(o["data"]) != chans[name]:
            raise WorkspaceError(
                f"{source}: at $.observations[{i}].data: the observation of channel {name!r} has "
                f"{len(o['data'])} bins, the channel has {chans[name]}"
            )
    if duplicated:
        warnings.warn(
            f"{source}: several observations for channel(s) {duplicated}: the last of each is used (as pyhf does)",
            stacklevel=caller_stacklevel(),
        )
    if ignored:
        warnings.warn(
            f"{source}: ignoring the observations of {len(ignored)} channel(s) not in the model "
            f"(as pyhf does): {', '.join(repr(n) for n in ignored)}",
            stacklevel=caller_stacklevel(),
        )
    # in the order of the observations, one per channel of the model
    obs = [o for i, o in sorted(by_name.values(), key=lambda t: t[0])]
    return obs, ignored


def _pyhf_schema_dir(version: Any) -> Path | None:
    """pyhf's JSON schemas of ``version``, found without importing pyhf (its import takes
    0.5 s: numpy and scipy backends); None if they cannot be found."""
    import importlib.util

    found = importlib.util.find_spec("pyhf")
    for loc in (found.submodule_search_locations or []) if found else []:
        d = Path(loc) / "schemas" / str(version)
        if (d / "workspace.json").is_file():
            return d
    return None


def _validate_pyhf(spec: Mapping, source: str) -> None:
    """pyhf's schema validation of a workspace: a compiled check against pyhf's own schema
    files, and ``pyhf.Workspace`` (its exact error) when that check fails or the schemas are
    not found."""
    d = _pyhf_schema_dir(spec.get("version"))
    if d is not None:
        base = f"https://scikit-hep.org/pyhf/schemas/{spec.get('version')}/"

        def load(uri: str) -> Any:
            if not uri.startswith(base):
                raise WorkspaceError(f"{source}: pyhf schema refers to an unknown document {uri!r}")
            return json.loads((d / uri[len(base) :].split("#")[0]).read_text())

        documents = [f.read_bytes() for f in sorted(d.glob("*.json"))]  # what the check inlines
        if schema_accepts(f"pyhf-workspace-{d.name}", load(base + "workspace.json"), spec, {"https": load}, documents):
            return
    import pyhf

    try:
        pyhf.Workspace(dict(spec))  # pyhf's own schema validation, for its message
    except pyhf.exceptions.InvalidSpecification as e:
        where = f"$.{e.path}" if e.path else "$"
        raise WorkspaceError(f"{source}: not a valid pyhf workspace: at {where}: {e.parent.message}") from None


def from_pyhf(
    spec: Mapping,
    measurement: str | None = None,
    dataset: str = "observed",
    source: str = "pyhf workspace",
    metadata: Mapping | None = None,
) -> Workspace:
    """Convert a pyhf workspace dict (validated with ``pyhf.Workspace``) to an nsbi workspace.

    ``measurement``: keep only that measurement (default: all). The pyhf observations of the
    channels of the model become the dataset ``dataset``; observations of other channels are
    ignored with one warning naming them, as pyhf ignores them (see
    :func:`_pyhf_observations`). ``source`` names the input in errors and warnings (e.g. the
    file). The workspace metadata record ``{"source": "pyhf", "ignored_observations": [...],
    **metadata}`` (``metadata``: e.g. the patches applied).
    """
    if not isinstance(spec, Mapping):
        raise WorkspaceError(f"{source}: top level must be a JSON object")
    _validate_pyhf(spec, source)
    meas = list(spec["measurements"])
    if measurement is not None:
        meas = [m for m in meas if m["name"] == measurement]
        if not meas:
            known = [m["name"] for m in spec["measurements"]]
            raise WorkspaceError(f"{source}: no measurement {measurement!r}; known: {known}")
    observations, ignored = _pyhf_observations(spec, source)
    channels = []
    for ch in spec["channels"]:
        samples = []
        for s in ch["samples"]:
            mods = []
            for m in s["modifiers"]:
                mm = {"name": m["name"], "type": m["type"]}
                if m["type"] in ("normsys", "histosys", "staterror", "shapesys"):
                    mm["data"] = copy_json(m["data"])
                mods.append(mm)
            samples.append({"name": s["name"], "data": list(map(float, s["data"])), "modifiers": mods})
        channels.append({"name": ch["name"], "type": "binned", "samples": samples})
    measurements = []
    for m in meas:
        params = []
        for p in m["config"].get("parameters", []):
            params.append(
                {
                    k: copy_json(v)
                    for k, v in p.items()
                    if k in ("name", "inits", "bounds", "fixed", "auxdata", "sigmas")
                }
            )
        measurements.append({"name": m["name"], "config": {"poi": m["config"]["poi"], "parameters": params}})
    nspec = {
        "version": SCHEMA_VERSION,
        "metadata": {
            "source": "pyhf",
            "ignored_observations": ignored,
            **copy_json(dict(metadata or {})),
        },
        "channels": channels,
        "observations": [
            {
                "name": dataset,
                "channels": [{"name": o["name"], "data": list(map(float, o["data"]))} for o in observations],
            }
        ],
        "measurements": measurements,
    }
    validate(nspec, source=source)
    return Workspace(nspec, validate_spec=False)


def to_pyhf(ws: Workspace | Mapping, dataset: str | None = None, unbinned: str = "drop") -> dict:
    """Binned channels of ``ws`` as a pyhf workspace dict (validated by ``pyhf.Workspace``).

    Morphing expressions that are a single parameter name become a ``normfactor``; ``"1"`` is
    dropped; anything else cannot be represented in pyhf and raises. Unbinned channels are
    dropped (``unbinned="drop"``, with a warning) or raise (``"error"``).
    """
    import pyhf

    if not isinstance(ws, Workspace):
        ws = Workspace(ws)
    from nsbi.expr import parse

    channels = []
    for ch in ws.spec["channels"]:
        if ch["type"] == "unbinned":
            if unbinned == "error":
                raise WorkspaceError(f"channel {ch['name']!r} is unbinned and cannot be exported to pyhf")
            warnings.warn(f"to_pyhf: dropping unbinned channel {ch['name']!r}", stacklevel=2)
            continue
        samples = []
        for s in ch["samples"]:
            mods = [dict(m, data=m.get("data")) for m in s["modifiers"]]
            morph = s.get("morphing")
            if morph is not None:
                e = parse(morph)
                text = morph.strip()
                if len(e.names) == 1 and text == next(iter(e.names)):
                    mods.append({"name": text, "type": "normfactor", "data": None})
                elif e.names or float(e.evaluate({})) != 1.0:
                    raise WorkspaceError(
                        f"channel {ch['name']!r} sample {s['name']!r}: morphing {morph!r} has no pyhf equivalent"
                    )
            samples.append({"name": s["name"], "data": list(s["data"]), "modifiers": mods})
        channels.append({"name": ch["name"], "samples": samples})
    if not channels:
        raise WorkspaceError("to_pyhf: workspace has no binned channels")
    used = {m["name"] for c in channels for s in c["samples"] for m in s["modifiers"]}
    names = {c["name"] for c in channels}
    ds = ws.dataset(dataset)
    obs = [{"name": c["name"], "data": list(c["data"])} for c in ds["channels"] if c["name"] in names]
    meas = []
    for m in ws.spec["measurements"]:
        params = [dict(p) for p in m["config"]["parameters"] if p["name"] in used]
        if m["config"]["poi"] not in used:
            raise WorkspaceError(
                f"to_pyhf: POI {m['config']['poi']!r} of measurement {m['name']!r} is not in a binned channel"
            )
        meas.append({"name": m["name"], "config": {"poi": m["config"]["poi"], "parameters": params}})
    out = {"channels": channels, "observations": obs, "measurements": meas, "version": "1.0.0"}
    pyhf.Workspace(out)
    return out


# ---------------------------------------------------------------------------- builders
def binned_channel_from_histograms(
    name: str,
    nominal: Mapping[str, Sequence[float]],
    variations: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]] | None = None,
    morphing: Mapping[str, str] | None = None,
    sumw2: Mapping[str, Sequence[float]] | None = None,
    normsys: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
    lumi: str | None = None,
    split_norm: bool = True,
    bin_edges: Sequence[float] | None = None,
    staterror_name: str | None = None,
) -> dict:
    """Histogram baseline channel from numpy counts.

    ``nominal[process]`` counts; ``variations[process][syst] = (up, down)`` counts. With
    ``split_norm`` each variation becomes a ``normsys`` (kappa = sum(var)/sum(nom)) plus a
    ``histosys`` on the normalised shape (the usual HistFactory split; same parameter);
    otherwise a single ``histosys``. ``morphing[process]`` is the same coefficient
    expression as in the unbinned channel, so NSBI and histogram fits share parameters.
    ``sumw2`` adds a ``staterror`` (sqrt(sumw2) per bin, named ``staterror_{name}``).
    ``normsys[process][syst] = (hi, lo)`` adds pure yield systematics; ``lumi`` adds a lumi
    modifier of that name to all processes.
    """
    variations = variations or {}
    morphing = morphing or {}
    normsys = normsys or {}
    samples = []
    for proc, nom in nominal.items():
        nom = np.asarray(nom, dtype=float)
        mods: list[dict] = []
        if lumi:
            mods.append({"name": lumi, "type": "lumi", "data": None})
        for syst, (hi, lo) in normsys.get(proc, {}).items():
            mods.append({"name": syst, "type": "normsys", "data": {"hi": float(hi), "lo": float(lo)}})
        for syst, (up, dn) in variations.get(proc, {}).items():
            up = np.asarray(up, dtype=float)
            dn = np.asarray(dn, dtype=float)
            if split_norm and nom.sum() > 0 and up.sum() > 0 and dn.sum() > 0:
                ku, kd = up.sum() / nom.sum(), dn.sum() / nom.sum()
                mods.append({"name": syst, "type": "normsys", "data": {"hi": float(ku), "lo": float(kd)}})
                up, dn = up / ku, dn / kd
            mods.append({"name": syst, "type": "histosys", "data": {"hi_data": up.tolist(), "lo_data": dn.tolist()}})
        if sumw2 is not None and proc in sumw2:
            mods.append(
                {
                    "name": staterror_name or f"staterror_{name}",
                    "type": "staterror",
                    "data": np.sqrt(np.asarray(sumw2[proc], float)).tolist(),
                }
            )
        s = {"name": proc, "data": nom.tolist(), "modifiers": mods}
        if proc in morphing and str(morphing[proc]).strip() != "1":
            s["morphing"] = str(morphing[proc])
        samples.append(s)
    ch = {"name": name, "type": "binned", "samples": samples}
    if bin_edges is not None:
        ch["bin_edges"] = [float(x) for x in bin_edges]
    return ch


def build_workspace(
    unbinned: Mapping[str, Mapping] | None = None,
    binned: Sequence[Mapping] | None = None,
    datasets: Mapping[str, Mapping[str, Any]] | None = None,
    poi: str = "mu",
    parameters: Sequence[Mapping] | None = None,
    measurement: str = "NSBI",
    lumi: tuple[str, float, float] | None = None,
    metadata: Mapping | None = None,
) -> Workspace:
    """Build a workspace from plain dicts/arrays.

    ``unbinned[region] = {"processes": {proc: {"yield": float, "morphing": expr,
    "normsys": {syst: (hi, lo)}, "eventsys": [syst, ...], "eventsys_norm": {syst: norm}}}}``
    (``norm``: the shape-normalisation nodes of :func:`nsbi.build.shape_norm_nodes`); ``yield`` may be replaced by
    ``"sumw": {"nominal": x, "syst_up": .., "syst_down": ..}`` (normsys kappas are derived
    from the ``_up``/``_down`` entries for all systematics listed in ``yield_systematics``
    or, by default, all found).
    ``binned``: list of channel dicts (e.g. from :func:`binned_channel_from_histograms`).
    ``datasets[name][channel]``: counts (binned) or a column dict / path to a parquet or npz
    file with ``weight``, ``logr_{proc}``, ``logr_{proc}__{syst}_up/_down`` (unbinned).
    ``lumi = (name, value, sigma)`` adds a lumi modifier to every sample and its config.
    """
    channels: list[dict] = []
    for region, reg in (unbinned or {}).items():
        samples = []
        for proc, p in reg["processes"].items():
            mods: list[dict] = []
            if lumi:
                mods.append({"name": lumi[0], "type": "lumi", "data": None})
            if "yield" in p:
                nu = float(p["yield"])
                ns = dict(p.get("normsys", {}))
            else:
                sumw = p["sumw"]
                nu = float(sumw["nominal"])
                ns = dict(p.get("normsys", {}))
                systs = p.get("yield_systematics") or sorted({k[: -len("_up")] for k in sumw if k.endswith("_up")})
                for sy in systs:
                    if f"{sy}_up" in sumw and f"{sy}_down" in sumw and nu > 0:
                        ns.setdefault(sy, (sumw[f"{sy}_up"] / nu, sumw[f"{sy}_down"] / nu))
            for sy, (hi, lo) in sorted(ns.items()):
                if hi <= 0 or lo <= 0:
                    raise WorkspaceError(
                        f"region {region!r} process {proc!r}: normsys {sy!r} kappas must be > 0, got {(hi, lo)}"
                    )
                if hi == 1.0 and lo == 1.0:
                    continue
                mods.append({"name": sy, "type": "normsys", "data": {"hi": float(hi), "lo": float(lo)}})
            for sy in p.get("eventsys", []):
                norm = p.get("eventsys_norm", {}).get(sy)
                mods.append({"name": sy, "type": "eventsys", "data": None if norm is None else {"norm": norm}})
            for nf in p.get("normfactors", []):
                mods.append({"name": nf, "type": "normfactor", "data": None})
            s = {"name": proc, "yield": nu, "modifiers": mods}
            if p.get("morphing") is not None and str(p["morphing"]).strip() != "1":
                s["morphing"] = str(p["morphing"])
            samples.append(s)
        channels.append({"name": region, "type": "unbinned", "samples": samples})
    for ch in binned or []:
        ch = copy.deepcopy(dict(ch))
        ch.setdefault("type", "binned")
        if lumi:
            for s in ch["samples"]:
                if not any(m["type"] == "lumi" for m in s["modifiers"]):
                    s["modifiers"].insert(0, {"name": lumi[0], "type": "lumi", "data": None})
        channels.append(ch)
    chtype = {c["name"]: c["type"] for c in channels}
    obs, events = [], {}
    for dname, dchans in (datasets or {}).items():
        entries = []
        for cname, val in dchans.items():
            if cname not in chtype:
                raise WorkspaceError(f"dataset {dname!r}: unknown channel {cname!r}")
            if chtype[cname] == "binned":
                entries.append({"name": cname, "data": [float(x) for x in np.asarray(val, float)]})
            else:
                arrays = (
                    read_events(val)
                    if isinstance(val, (str, os.PathLike))
                    else {k: np.asarray(v, float) for k, v in val.items()}
                )
                events[(dname, cname)] = arrays
                n = len(arrays["weight"])
                entries.append(
                    {
                        "name": cname,
                        "events": {
                            "path": f"<memory:{dname}.{cname}>",
                            "sha256": "0" * 64,
                            "format": "npz",
                            "n_events": n,
                        },
                    }
                )
        obs.append({"name": dname, "channels": entries})
    params = [dict(p) for p in (parameters or [])]
    if lumi and not any(p["name"] == lumi[0] for p in params):
        params.append(
            {
                "name": lumi[0],
                "auxdata": [float(lumi[1])],
                "sigmas": [float(lumi[2])],
                "inits": [float(lumi[1])],
                "bounds": [[max(0.0, lumi[1] - 5 * lumi[2]), lumi[1] + 5 * lumi[2]]],
            }
        )
    spec = {
        "version": SCHEMA_VERSION,
        "channels": channels,
        "observations": obs,
        "measurements": [{"name": measurement, "config": {"poi": poi, "parameters": params}}],
    }
    if metadata:
        spec["metadata"] = dict(metadata)
    return Workspace(spec, events=events)
