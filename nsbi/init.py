"""``nsbi init``: a commented configuration skeleton written from the user's own ntuples.

:func:`inspect_file` reads only the metadata of a ROOT file (no event is read): its trees
(TTree or RNTuple) with their entry counts and, for the chosen tree, every branch with its
type, jagged branches (a list per event, e.g. ``jets_pt`` counted by ``njets_pt``, or the
NanoAOD-style ``Muon_pt`` counted by ``nMuon``) marked, and the candidate weight and
event-number branches. :func:`skeleton` turns the inspections of several files into the YAML
text of a configuration, one sample per file, with a comment on every section.

What only the physicist knows is the placeholder ``FILL_ME`` (:data:`PLACEHOLDER`): the
analysis name, the type of every Monte Carlo sample (basis or background), the morphing
coefficients and the histogram baseline's observable and binning; guesses that deserve a look
carry a ``# TODO`` comment. With every ``FILL_ME`` replaced the file is a valid configuration
(:func:`nsbi.config.load`); a ``FILL_ME`` left in a sample type, a coefficient or the binning
fails the validation naming its key (the analysis name ``FILL_ME`` is a valid name, though).
"""

from __future__ import annotations

import functools
import json
import re
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import yaml

from .config import load_schema
from .expr import ExpressionError, parse
from .io import atomic_path

__all__ = ["InitError", "PLACEHOLDER", "inspect_file", "placeholders", "skeleton", "write_skeleton"]

#: the text a user replaces in a skeleton (``grep -n FILL_ME config.yaml``)
PLACEHOLDER = "FILL_ME"

# candidate names (case-insensitive): weights are floating point, event ids integer
_WEIGHT_NAME = re.compile(r"weight|wgt|(?:^|_)w(?:_|$)", re.IGNORECASE)
_EVENT_NAME = re.compile(r"^(?:event|evt)(?:_?(?:number|num|nr|no|id))?$", re.IGNORECASE)
# run / lumi-block / dataset ids: integers that are no features either
_ID_NAME = re.compile(
    r"^(?:run(?:_?number)?|lumi(?:nosity)?_?block|lumi|lbn?|(?:mc_?)?channel_?number|dsid)$", re.IGNORECASE
)
# the direction in a systematic variation's name: weight_kfactor_up, weight_JESDown, ...
_DIRECTION = re.compile(r"up|down", re.IGNORECASE)

_TYPE_KINDS = {
    "float": "float",
    "double": "float",
    "float_t": "float",
    "double_t": "float",
    "float16_t": "float",
    "double32_t": "float",
    "bool": "bool",
    "bool_t": "bool",
}
_INT_TYPE = re.compile(
    r"^(?:u?int(?:8|16|32|64)?(?:_t)?|u?(?:char|short|long|long64)_t"
    r"|(?:unsigned )?(?:char|short|int|long(?: long)?)|size_t)$"
)
_WIDTH = 96  # comment lines are wrapped to this width


class InitError(ValueError):
    """An input file cannot be inspected, its tree is ambiguous, or the output exists."""


# --------------------------------------------------------------------------- inspection


def _dtype_kind(kind: str) -> str:
    return {"f": "float", "i": "int", "u": "int", "b": "bool"}.get(kind, "other")


def _kind_from_typename(typename: str) -> tuple[str, bool]:
    """(kind, jagged) from a C++ type name: ``double`` -> float, ``std::vector<float>`` and
    ``float[]`` -> jagged float, nested vectors and anything else -> other."""
    name = typename.replace("std::", "").strip()
    jagged = False
    m = re.fullmatch(r"(?:R?Vec|vector)<(.+)>", name)
    if m:
        name, jagged = m.group(1).strip(), True
    elif re.fullmatch(r".+\[\d*\]", name):
        name, jagged = name[: name.index("[")].strip(), True
    key = name.lower()
    if key in _TYPE_KINDS:
        return _TYPE_KINDS[key], jagged
    if _INT_TYPE.fullmatch(key):
        return "int", jagged
    return "other", jagged


def _branch_info(branch: Any) -> dict[str, Any]:
    """Type name, kind (float, int, bool or other) and jaggedness of one branch or field."""
    typename = str(getattr(branch, "typename", "") or "")
    kind, jagged = _kind_from_typename(typename)
    try:
        interp = getattr(branch, "interpretation", None)
    except Exception:  # noqa: BLE001 - uproot cannot interpret every branch (objects, streamers)
        interp = None
    if interp is not None:
        content = getattr(interp, "content", None)  # AsJagged
        if content is not None and hasattr(content, "to_dtype"):
            kind, jagged = _dtype_kind(content.to_dtype.kind), True
        elif hasattr(interp, "to_dtype") and hasattr(interp, "inner_shape"):  # AsDtype
            kind, jagged = _dtype_kind(interp.to_dtype.base.kind), bool(interp.inner_shape)
        elif type(interp).__name__ in ("AsObjects", "AsStrings"):
            kind = "other"
    count = getattr(branch, "count_branch", None)
    return {
        "type": typename,
        "kind": kind,
        "jagged": jagged,
        "counter": getattr(count, "name", None) if jagged else None,
    }


def _weight_rank(name: str) -> tuple[int, int, int, str]:
    # nominal before variations, names with "weight" first, then the shortest
    variation = _direction(name) is not None or bool(re.search(r"(?i)(?:^|_)(?:sys|syst|var|alt)(?:_|$)", name))
    return (int(variation), 0 if "weight" in name.lower() else 1, len(name), name)


def _event_rank(name: str) -> tuple[int, int, str]:
    low = name.lower().replace("_", "")
    return ({"eventnumber": 0, "event": 1}.get(low, 2), len(name), name)


def _direction(name: str) -> tuple[str, str, str] | None:
    """``(before, direction, after)`` of a systematic variation's name (``weight_pileup_up``,
    ``w_JESDown``, ``syst_up_2``; the last up/down that is a word of its own), else None."""
    for m in reversed(list(_DIRECTION.finditer(name))):
        pre, post = name[: m.start()], name[m.end() :]
        word = pre == "" or pre.endswith("_") or m.group() in ("Up", "Down")
        if word and (post == "" or post.startswith("_")):
            return pre, m.group(), post
    return None


def _is_collection(name: str, counter: str | None) -> bool:
    """NanoAOD-style collection: ``Muon_pt`` counted by ``nMuon``."""
    return bool(counter and counter.startswith("n") and len(counter) > 1 and name.startswith(counter[1:] + "_"))


def _trees(fh: Any) -> dict[str, Any]:
    """Every TTree and RNTuple of an open file (also in directories), by path without cycle."""
    out = {}
    for key, cls in fh.classnames(recursive=True).items():
        name = key.rsplit(";", 1)[0]
        if (cls == "TTree" or cls.endswith("RNTuple")) and name not in out:
            out[name] = key
    return out


def _tree_list(trees: dict[str, int]) -> str:
    return ", ".join(f"{name} ({n} entries)" for name, n in trees.items())


def inspect_file(path: str | PathLike[str], tree: str | None = None) -> dict[str, Any]:
    """Trees and branches of one ROOT file (metadata only; no event is read).

    Returns ``path``; ``trees`` {name: entries} (TTrees and RNTuples, also in directories);
    ``tree`` (``tree`` if given, else the file's only tree; several trees without ``tree``
    raise :class:`InitError` naming them) and its ``entries``; ``branches`` {name: {type,
    kind (float/int/bool/other), jagged, counter}} in file order; ``weights``: floating-point
    scalar branches named like a weight (weight, wgt, w_), best first; ``event_keys``: integer
    scalar branches named like an event number (event, evt, eventNumber, event_number), best
    first; ``format``: "nanoaod" when a jagged branch is a collection field (``Muon_pt``
    counted by ``nMuon``), else "flat"."""
    import uproot

    path = str(path)
    if not Path(path).is_file():
        raise InitError(f"no such file: '{path}'")
    try:
        fh = uproot.open(path)
    except Exception as err:  # noqa: BLE001 - uproot raises ValueError, OSError, ... on a non-ROOT file
        raise InitError(f"'{path}' cannot be read as a ROOT file: {err}") from None
    with fh:
        keys = _trees(fh)
        trees = {name: int(fh[key].num_entries) for name, key in keys.items()}
        if not trees:
            raise InitError(f"'{path}' contains no tree (TTree or RNTuple)")
        if tree is not None and tree not in trees:
            raise InitError(f"'{path}' has no tree '{tree}'; its trees: {_tree_list(trees)}")
        if tree is None:
            if len(trees) > 1:
                raise InitError(
                    f"'{path}' has several trees: {_tree_list(trees)}; choose one with --tree NAME (tree=NAME)"
                )
            (tree,) = trees
        obj = fh[keys[tree]]
        branches = {name: _branch_info(obj[name]) for name in obj.keys()}
    scalar = {name: b["kind"] for name, b in branches.items() if not b["jagged"]}
    weights = sorted((n for n, k in scalar.items() if k == "float" and _WEIGHT_NAME.search(n)), key=_weight_rank)
    event_keys = sorted((n for n, k in scalar.items() if k == "int" and _EVENT_NAME.match(n)), key=_event_rank)
    nano = any(b["jagged"] and _is_collection(n, b["counter"]) for n, b in branches.items())
    return {
        "path": path,
        "trees": trees,
        "tree": tree,
        "entries": trees[tree],
        "branches": branches,
        "weights": weights,
        "event_keys": event_keys,
        "format": "nanoaod" if nano else "flat",
    }


# --------------------------------------------------------------------------- YAML text


@functools.cache
def _schema() -> dict[str, Any]:
    return load_schema()


def _default(*keys: str) -> Any:
    """The schema default of a config key, e.g. ``_default("training", "members")``."""
    node = _schema()
    for k in keys:
        node = node["properties"][k]
    return node["default"]


def _name_pattern() -> str:
    return _schema()["$defs"]["name"]["pattern"]


def _scalar(value: Any) -> str:
    """A YAML scalar or flow sequence: strings plain where YAML reads them back unchanged
    (``weight``, ``sig``), else double-quoted (JSON strings are YAML); numbers and lists as JSON."""
    if isinstance(value, str):
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) and yaml.safe_load(value) == value:
            return value
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    text = json.dumps(value)
    if isinstance(value, float) and "e" in text and "." not in text:
        text = text.replace("e", ".0e")  # YAML 1.1 (PyYAML) reads 1e-05 as a string, 1.0e-05 as a float
    return text


def _comment(text: str, indent: int = 0) -> list[str]:
    """``text`` as ``#`` lines wrapped to the comment width."""
    pad = " " * indent + "# "
    # no line break inside `code` or a "quoted expression": their spaces are kept as U+00A0 meanwhile
    text = re.sub(r"`[^`]*`|\"[^\"]*\"", lambda m: m.group().replace(" ", "\xa0"), text)
    lines = textwrap.wrap(
        text, _WIDTH, initial_indent=pad, subsequent_indent=pad, break_on_hyphens=False, break_long_words=False
    )
    return [line.replace("\xa0", " ") for line in lines]


def _line(text: str, note: str = "", col: int = 30) -> str:
    """``text`` with an end-of-line comment ``note`` aligned at column ``col``."""
    if not note:
        return text
    return f"{text.ljust(col - 1)} # {note}" if len(text) < col - 1 else f"{text}  # {note}"


def _sanitise(text: str, fallback: str) -> str:
    """``text`` made a config name (letters, digits and single underscores, a letter first)."""
    name = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]", "_", text)).strip("_")
    if not name or not name[0].isalpha():
        name = f"{fallback}_{name}" if name else fallback
    return name


def _unique_name(name: str, taken: set[str]) -> str:
    out, i = name, 2
    while out in taken:
        out, i = f"{name}_{i}", i + 1
    taken.add(out)
    return out


def _usable(branch: str) -> bool:
    """Whether an expression can name the branch as it is (``x``, not ``2x`` or ``max``)."""
    try:
        return parse(branch).names == {branch}
    except ExpressionError:
        return False


def _stem(path: str) -> str:
    name = Path(path).name
    return name[: -len(".root")] if name.lower().endswith(".root") else Path(path).stem


def _common(lists: Iterable[Sequence[str]]) -> list[str]:
    """The entries of the first list present in every list, in the first list's order."""
    lists = list(lists)
    if not lists:
        return []
    rest = [set(x) for x in lists[1:]]
    return [x for x in lists[0] if all(x in r for r in rest)]


@dataclass
class _Plan:
    """What the skeleton is written from: the inspected files and the choices made from them."""

    infos: list[dict[str, Any]]
    tree: str  # input.tree: the tree of most files
    fmt: str
    samples: dict[str, dict[str, Any]]  # name -> {"type", "infos"}
    event_keys: list[str]  # event-number candidates present in every file, best first
    features: list[tuple[str, str, str]]  # (feature name, branch, type)
    left_out: dict[str, list[str]]  # why -> scalar branches not listed as features
    groups: dict[str, list[str]]  # jagged branches by counter (of the first file)

    @property
    def first(self) -> dict[str, Any]:
        return self.infos[0]

    @property
    def mc(self) -> list[str]:
        return [n for n, s in self.samples.items() if s["type"] != "data"]

    @property
    def feature(self) -> str:
        """A feature name for the examples."""
        return self.features[0][0] if self.features else "x"

    def expr(self, branch: str) -> str:
        """How an expression names a jagged branch: ``Muon.pt`` for a NanoAOD collection field."""
        counter = self.first["branches"][branch]["counter"]
        if self.fmt == "nanoaod" and _is_collection(branch, counter):
            prefix = counter[1:]
            return f"{prefix}.{branch[len(prefix) + 1 :]}"
        return branch


def _weight_pairs(plan: _Plan) -> list[dict[str, Any]]:
    """Up/down pairs of weight branches (``weight_kfactor_up``/``_down``), as example systematics."""
    out: dict[str, dict[str, Any]] = {}
    taken = {"lumi", "JES"}  # the other examples
    for name, s in plan.samples.items():
        if s["type"] == "data":
            continue
        weights = set(_common(i["weights"] for i in s["infos"]))
        for w in sorted(weights):
            parts = _direction(w)
            if parts is None or parts[1].lower() != "up":
                continue
            pre, up, post = parts
            down = pre + {"up": "down", "Up": "Down", "UP": "DOWN"}.get(up, "down") + post
            if down not in weights:
                continue
            if w not in out:
                base = re.sub(r"(?i)weights?", "", pre + post)
                syst = _unique_name(_sanitise(base, "syst") if re.search(r"[A-Za-z0-9]", base) else "syst", taken)
                out[w] = {"name": syst, "up": w, "down": down, "samples": []}
            out[w]["samples"].append(name)
    return list(out.values())


def _jagged_groups(branches: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Jagged branches an expression can reduce (numbers and flags), grouped by their counter
    (one group per collection), the numeric ones first."""
    groups: dict[str, list[str]] = {}
    for name, b in branches.items():
        if b["jagged"] and b["kind"] != "other":
            groups.setdefault(b["counter"] or name, []).append(name)
    return {k: sorted(v, key=lambda n: branches[n]["kind"] == "bool") for k, v in groups.items()}


def _plan(paths: Sequence[str | PathLike[str]], tree: str | None) -> _Plan:
    if not paths:
        raise InitError("no input file given")
    infos = [inspect_file(p, tree) for p in paths]
    main_tree = Counter(i["tree"] for i in infos).most_common(1)[0][0]
    fmt = "nanoaod" if any(i["format"] == "nanoaod" for i in infos) else "flat"

    # one sample per file; the files named like data form the one data sample
    samples: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    data = [i for i in infos if "data" in _stem(i["path"]).lower()]
    for info in infos:
        if any(info is d for d in data[1:]):
            continue
        if data and info is data[0]:
            name = _unique_name(_sanitise(_stem(info["path"]), "data") if len(data) == 1 else "data", taken)
            samples[name] = {"type": "data", "infos": data}
        else:
            name = _unique_name(_sanitise(_stem(info["path"]), "sample"), taken)
            samples[name] = {"type": PLACEHOLDER, "infos": [info]}

    # features: the scalar numeric branches of every file, less weights and ids
    first = infos[0]
    in_all = set(_common([n for n, b in i["branches"].items() if not b["jagged"]] for i in infos))
    ids = {w for i in infos for w in i["weights"] + i["event_keys"]}
    features: list[tuple[str, str, str]] = []
    left_out: dict[str, list[str]] = {}
    taken_features: set[str] = set()
    for n, b in first["branches"].items():
        why = None
        if b["jagged"]:
            why = "nested or not numeric" if b["kind"] == "other" else None
            if why is None:
                continue
        elif b["kind"] == "bool":
            why = "boolean flags (for selections, e.g. preselection)"
        elif b["kind"] == "other":
            why = "not numeric"
        elif n in ids or _ID_NAME.match(n):
            why = "weights and ids"
        elif n not in in_all:
            why = "not in every file"
        elif not _usable(n):
            why = "names an expression cannot use"
        if why:
            left_out.setdefault(why, []).append(n)
            continue
        name = _unique_name(n if re.fullmatch(_name_pattern(), n) else _sanitise(n, "f"), taken_features)
        features.append((name, n, b["type"]))
    return _Plan(
        infos=infos,
        tree=main_tree,
        fmt=fmt,
        samples=samples,
        event_keys=_common(i["event_keys"] for i in infos),
        features=features,
        left_out=left_out,
        groups=_jagged_groups(first["branches"]),
    )


def _header(plan: _Plan) -> list[str]:
    lines = ["# nsbi analysis configuration: skeleton written by `nsbi init` from"]
    lines += [f"#   {i['path']}  (tree '{i['tree']}', {i['entries']} entries)" for i in plan.infos]
    lines.append("#")
    lines += _comment(
        f"Replace every {PLACEHOLDER} (`grep -n {PLACEHOLDER} <this file>` lists them) and review every "
        f"TODO (a {PLACEHOLDER} left in a sample type, a coefficient or the binning fails the validation, "
        "naming its key). Check the result with `nsbi check <this file>` (every input file, tree and "
        "branch) and `snakemake -n --configfile <this file>`. Keys not written here take the defaults of "
        "nsbi/schemas/config.schema.yaml; README.md (The configuration) describes every section and "
        "config/config.yaml is a complete example."
    )
    return lines


def _analysis(plan: _Plan) -> list[str]:
    lines = _comment(
        "Name of the analysis (a letter, then letters, digits and single underscores): the outputs go "
        "to <output_dir>/<analysis>/."
    )
    return lines + [
        _line(f"analysis: {PLACEHOLDER}", "e.g. hzz4l_offshell"),
        _line(f"output_dir: {_scalar(_default('output_dir'))}", "relative to the directory snakemake runs in"),
        _line(f"seed: {_default('seed')}", "master seed of every random step"),
    ]


def _input(plan: _Plan) -> list[str]:
    fmt_note = "nanoaod: collection field Muon.pt = branch Muon_pt" if plan.fmt == "nanoaod" else "flat or nanoaod"
    lines = _comment("How the ntuples are read.") + [
        "input:",
        _line(f"  tree: {_scalar(plan.tree)}", "tree of every sample that names none (samples[].tree)"),
        _line(f"  format: {plan.fmt}", fmt_note),
        _line(f"  step_size: {_default('input', 'step_size')}", "events per chunk read (bounds the memory)"),
    ]
    found = sorted({k for i in plan.infos for k in i["event_keys"]}, key=_event_rank)
    if plan.event_keys:
        note = "integer per-event id: splits the events into the k folds"
        if len(found) > 1:
            note += f"; candidates: {', '.join(found)}"
        lines.append(_line(f"  event_key: {_scalar(plan.event_keys[0])}", note))
    else:
        some = f"; found in some files only: {', '.join(found)}" if found else ""
        lines.append(
            _line(
                f"  event_key: {PLACEHOLDER}",
                f"integer per-event id branch of every file (none named event, evt, eventNumber{some})",
            )
        )
    return lines


def _samples(plan: _Plan) -> list[str]:
    lines = _comment(
        "One sample per input file; a sample may list several files (paths relative to the directory "
        "snakemake runs in). type: basis = its yield depends on the POI through its coefficient in "
        "morphing.coefficients; background = does not depend on the POI (coefficient 1, no morphing "
        "entry); data = the observed events (at most one sample; without one the fits use Asimov "
        "data). At least one sample must be of type basis. weight: the per-event weight, an expression "
        'of branches in quotes, e.g. "weight * sf_lep". Optional: tree, selection (an extra cut), label '
        "(legend text)."
    )
    lines.append("samples:")
    for name, s in plan.samples.items():
        lines.append(f"  - name: {_scalar(name)}")
        if s["type"] == "data":
            lines.append(_line("    type: data", 'the file name contains "data"'))
        else:
            lines.append(_line(f"    type: {PLACEHOLDER}", "basis or background"))
        lines.append(f"    files: {_scalar([i['path'] for i in s['infos']])}")
        trees = sorted({i["tree"] for i in s["infos"]})
        if len(trees) > 1:
            lines.append(_line(f"    tree: {_scalar(trees[0])}", f"TODO: the files have trees {', '.join(trees)}"))
        elif trees != [plan.tree]:
            lines.append(f"    tree: {_scalar(trees[0])}")
        if s["type"] == "data":
            lines.append('    weight: "1"')
            continue
        candidates = _common(i["weights"] for i in s["infos"])
        if candidates:
            note = f"candidates: {', '.join(candidates)}" if len(candidates) > 1 else ""
            lines.append(_line(f"    weight: {_scalar(candidates[0])}", note))
        else:
            lines.append(_line('    weight: "1"', "TODO: no weight branch found (names with weight, wgt or w_)"))
    if not plan.mc:
        lines += _comment("TODO: add the Monte Carlo samples (at least one of type basis).", 2)
    return lines


def _systematics(plan: _Plan) -> list[str]:
    lines = _comment(
        "Systematic uncertainties, none yet. type: weight = alternative weight expressions; tree = "
        "alternative files ({sample} in a name is replaced by the sample name) and/or tree; norm = "
        "yield factors. samples: the samples affected (default: every Monte Carlo sample). Examples:"
    )
    lines += ["systematics: []", "# systematics:"]
    for pair in _weight_pairs(plan):
        lines += [
            _line(f"#   - name: {pair['name']}", f"weight branches {pair['up']} / {pair['down']} found"),
            "#     type: weight",
            f"#     samples: {_scalar(pair['samples'])}",
            f"#     up:   {{weight: {_scalar(pair['up'])}}}",
            f"#     down: {{weight: {_scalar(pair['down'])}}}",
        ]
    others = sorted({t for i in plan.infos for t in i["trees"]} - {i["tree"] for i in plan.infos})
    varied = others[:2] if others else [f"{plan.tree}_JES_up", f"{plan.tree}_JES_down"]
    lines += [
        "#   - name: lumi",
        "#     type: norm",
        "#     up:   {norm: 1.017}",
        "#     down: {norm: 0.983}",
        "#   - name: JES",
        "#     type: tree",
        _line(f"#     up:   {{tree: {_scalar(varied[0])}}}", 'or {files: ["ntuples/{sample}_JES_up.root"]}'),
        f"#     down: {{tree: {_scalar(varied[-1])}}}",
    ]
    return lines + _names_comment("other trees in the files", others, 0)


def _names_comment(label: str, names: Sequence[str], indent: int) -> list[str]:
    return _comment(f"{label}: {', '.join(names)}", indent) if names else []


def _features(plan: _Plan) -> list[str]:
    lines = _comment(
        "Features: the per-event inputs of the networks, here every scalar numeric branch of tree "
        f"'{plan.tree}' found in every file (name = the branch; `expr` computes one from branches, e.g. "
        '{name: ht, expr: "sum(jets_pt)"}). TODO: keep the physics features the networks should see.'
    )
    lines.append("features:")
    counters = {b["counter"] for b in plan.first["branches"].values()}
    for name, branch, typename in plan.features:
        entry = f"{{name: {_scalar(name)}}}"
        if name != branch:
            entry = f"{{name: {_scalar(name)}, expr: {_scalar(branch)}}}"
        note = typename + (", entries of a jagged branch" if branch in counters else "")
        lines.append(_line(f"  - {entry}", note))
    if not plan.features:
        lines.append(_line(f"  - {{name: {PLACEHOLDER}}}", "TODO: no scalar numeric branch in every file"))
    for why, names in plan.left_out.items():
        lines += _names_comment(f"not listed, {why}", names, 2)
    if plan.groups:
        lines += _comment(
            "jagged branches (a list per event) become features through a per-event expression: "
            "max/min (nan for an empty list unless default= is given), [i] (the i-th entry, nan when "
            "missing), count, sum, any, all:",
            2,
        )
    for counter, members in plan.groups.items():
        head = members[0]
        b = plan.first["branches"][head]
        ref = plan.expr(head)
        if len(members) > 1:
            prefix = counter[1:] if plan.fmt == "nanoaod" and _is_collection(head, counter) else counter
            lines += _comment(f"{prefix} (counter {counter}): {', '.join(plan.expr(m) for m in members)}", 2)
        else:
            lines.append(f"  # {head} ({b['type']}" + (f", counter {counter})" if b["counter"] else ")"))
        example = f'{{name: {_sanitise(f"{head}_max", "f")}, expr: "max({ref}, default=0)"}}'
        lines.append(_line(f"  # - {example}", f'or "{ref}[0]", "count({ref})", "sum({ref})"', 62))
    return lines


def _preselection(plan: _Plan) -> list[str]:
    branch = plan.features[0][1] if plan.features else "x"
    example = f"({branch} > 0)"
    if plan.groups:
        example += f" & (count({plan.expr(next(iter(plan.groups.values()))[0])}) >= 2)"
    lines = _comment(
        "Preselection: a cut on branches applied to every sample before the regions, e.g. "
        f'"{example}" ("&&", "||" and "!" work too). Default: every event.'
    )
    return lines + [_line('preselection: "1 > 0"', "TODO: your preselection")]


def _regions(plan: _Plan) -> list[str]:
    lines = _comment(
        "Regions, which must not overlap: unbinned = fitted event by event with the networks (NSBI); "
        "binned = a histogram of `observable` in `binning`. Selections are expressions of the features "
        "(and of region-classifier scores score_<class>, see region_classifier in config/config.yaml)."
    )
    return lines + [
        "regions:",
        "  - name: SR",
        "    type: unbinned",
        _line('    selection: "1 > 0"', 'TODO: the signal region; "1 > 0" keeps every preselected event'),
        "  # - name: CR",
        "  #   type: binned",
        f'  #   selection: "{plan.feature} < 0"',
        f"  #   observable: {_scalar(plan.feature)}",
        "  #   binning: {bins: 10, low: 0, high: 100}     # or bin edges [0, 10, 30, 100]",
    ]


def _morphing(plan: _Plan) -> list[str]:
    lines = _comment(
        "Morphing: the parameter of interest (POI) and the coefficient f_c(POI) of every basis sample, "
        'an expression of the POI in quotes: e.g. "mu" for a signal whose yield scales with mu; for '
        'an interference analysis with samples S, SBI (at mu = 1) and B: S: "mu - sqrt(mu)", SBI: '
        '"sqrt(mu)", B: "1 - sqrt(mu)". A basis sample not listed gets 1; delete the entries of '
        "background samples. Instead of coefficients, `basis` derives them from the POI value each "
        "basis sample was generated at (README.md)."
    )
    lines += ["morphing:", _line("  poi: mu", "TODO: name of the POI")]
    if plan.mc:
        lines.append("  coefficients:")
        lines += [f'    {_scalar(name)}: "{PLACEHOLDER}"' for name in plan.mc]
    else:
        lines.append(f'  coefficients: {{{PLACEHOLDER}: "{PLACEHOLDER}"}}')
    return lines + [
        _line(f"  poi_init: {_scalar(_default('morphing', 'poi_init'))}", "starting value of the fits"),
        _line(f"  poi_bounds: {_scalar(_default('morphing', 'poi_bounds'))}", "TODO: range of the POI in the fits"),
    ]


def _region_classifier(plan: _Plan) -> list[str]:
    return _comment(
        "Optional region_classifier: a classifier of sample classes whose scores score_<class> "
        "regions can cut on (see config/config.yaml)."
    )


def _training(plan: _Plan) -> list[str]:
    lines = _comment(
        "Training of the density-ratio networks (an ensemble per sample; every key has a default, "
        "see config/config.yaml for more). reference: the reference mixture, by default every Monte "
        "Carlo sample with coefficient 1."
    )

    def key(k: str, note: str = "") -> str:
        return _line(f"  {k}: {_scalar(_default('training', k))}", note)

    return lines + [
        "training:",
        key("members", "ensemble members"),
        key("folds", "k-fold split on input.event_key"),
        key("hidden", "hidden layer widths"),
        key("learning_rate"),
        key("batch_size"),
        key("max_epochs"),
        key("patience", "early stopping"),
    ]


def _flow(section: str, key: str, names: Sequence[str]) -> str:
    """``{a: 1, b: 2}`` of the schema defaults of ``section.key.<names>``."""
    return "{" + ", ".join(f"{n}: {_scalar(_default(section, key, n))}" for n in names) + "}"


def _validation(plan: _Plan) -> list[str]:
    lines = _comment(
        "Toy-based validation of the NSBI workspace: Neyman construction on a grid of POI values, "
        "coverage and linearity. TODO: a grid over the POI values of interest, inside "
        "morphing.poi_bounds; coverage.poi_true must be points of the grid."
    )
    return lines + [
        "validation:",
        _line(f"  cls: {_scalar(_default('validation', 'cls'))}", "confidence levels"),
        f"  grid: {_flow('validation', 'grid', ('low', 'high', 'points'))}",
        _line(f"  toys: {_flow('validation', 'toys', ('per_batch', 'batches'))}", "per grid point"),
        f"  coverage: {_flow('validation', 'coverage', ('poi_true',))}",
        _line(f"  linearity: {_scalar(_default('validation', 'linearity'))}", "injected POI values (Asimov)"),
    ]


def _fit(plan: _Plan) -> list[str]:
    lines = _comment(
        "Fits: the likelihood scan of the POI, and the histogram baseline: the unbinned region(s) "
        "binned in one observable (an expression of the features, e.g. an invariant mass), fitted for "
        "comparison with NSBI."
    )
    return lines + [
        "fit:",
        f"  scan: {_flow('fit', 'scan', ('low', 'high', 'points'))}",
        _line(f"  minos: {_scalar(_default('fit', 'minos'))}", "MINOS interval of the POI"),
        "  histogram_baseline:",
        _line(f'    observable: "{PLACEHOLDER}"', f"a feature expression, e.g. {plan.feature}", 40),
        _line(f"    binning: {{bins: 20, low: {PLACEHOLDER}, high: {PLACEHOLDER}}}", "or bin edges [a, b, ...]", 40),
    ]


_SECTIONS = (
    _header,
    _analysis,
    _input,
    _samples,
    _systematics,
    _features,
    _preselection,
    _regions,
    _region_classifier,
    _morphing,
    _training,
    _validation,
    _fit,
)


def skeleton(paths: Sequence[str | PathLike[str]], tree: str | None = None) -> str:
    """The YAML text of a commented configuration skeleton for the ROOT files ``paths``.

    One sample per file (named after the file; the files whose name contains "data" form the
    data sample, weight "1"); ``input`` from the files (tree, format, event key); one feature
    per scalar numeric branch of every file (weights and ids left out; jagged branches as
    commented expressions); the placeholder ``FILL_ME`` for what the files cannot tell.
    ``tree`` selects the tree in every file (required where a file has several)."""
    plan = _plan(paths, tree)
    return "\n\n".join("\n".join(section(plan)) for section in _SECTIONS) + "\n"


def placeholders(text: str) -> list[int]:
    """Line numbers (from 1) of the placeholders left in a skeleton (comments ignored)."""
    return [i for i, line in enumerate(text.splitlines(), 1) if PLACEHOLDER in line.split("#", 1)[0]]


def write_skeleton(
    paths: Sequence[str | PathLike[str]],
    out: str | PathLike[str],
    tree: str | None = None,
    *,
    force: bool = False,
) -> Path:
    """Write :func:`skeleton` to ``out`` (its directory is created); an existing ``out`` is
    replaced only with ``force=True``, else :class:`InitError` naming it."""
    out = Path(out)
    if out.exists() and not force:
        raise InitError(f"'{out}' exists; not overwritten without --force")
    text = skeleton(paths, tree)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    return out
