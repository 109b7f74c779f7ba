"""Every configured name that becomes part of a file path carries the one name pattern, and
output directories stay inside the working directory.

What counts as a *name*: a configured string that nsbi turns into part of a file path, a
Snakemake wildcard, a JSON key or a column name -- sample, region, systematic and feature
names, region-classifier classes, the POI, the analysis, and every reference to one of them
(``systematics[].samples``, ``region_classifier.features``, ``training.reference`` keys,
``plots.sensitivity.x``, ``validation.linearity_nuisances`` keys, ...). Ensemble/target
names are built from sample and systematic names (``S``, ``S__kfactor_up``). Every name
refers to ``$defs/name`` of the schema (the keys of a mapping of names via
``propertyNames``).

Not names: expressions (``$defs/expression``; the branch names in them are parsed by
nsbi.expr and never become paths), fixed vocabularies (``enum``), and the few free strings
listed in :data:`NOT_NAMES` with the reason. The schema walk below fails on any other
string, so a new key has to be classified -- and a name has to carry the pattern.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TEST_CONFIG, snakemake

from nsbi import config as ncfg
from nsbi.train import targets as ntgt

ESCAPE = "../../tmp/escaped"

NAME_REF = {"$ref": "#/$defs/name"}
#: $defs that are leaves of the walk (a name, an expression, an output directory)
LEAF_DEFS = {"name", "expression", "directory"}

#: string-valued keys that are not names (fnmatch patterns of the walk's key paths) and why
NOT_NAMES = {
    "*.label": "free text shown in plots",
    "morphing.poi_label": "free text (LaTeX / mathtext) shown in plots; the POI's name is morphing.poi",
    "*.tree": "tree inside an input ROOT file (may be a TDirectory path); never an output path",
    "*.files[]": "input files (read, never written; '{sample}' templates)",
    "input.event_key": "branch read from the inputs; the prepared column is always 'event_key'",
    "training.model": "key of the model registry (nsbi.train.models); never part of a path",
}
#: a property of one of these names holds a name (or a list of names)
NAME_PROPERTIES = {"name", "analysis", "poi", "samples", "features", "classes", "x", "y", "processes"}


def walk(schema):
    """(key path, kind) of every string-valued node and every mapping's keys in the schema.

    Key paths are config keys with ``[]`` for list items, ``.<key>`` for the values of a
    mapping and ``{}`` for its keys. Kinds: the $defs name of a leaf (``name``,
    ``expression``, ``directory``), ``enum``, ``string`` (an unclassified string),
    ``keys:name`` or ``keys:free`` (the keys of a mapping, with or without the name pattern).
    """
    out = []

    def resolve(ref):
        node = schema
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return node

    def visit(node, key):
        if not isinstance(node, dict):
            return
        if "$ref" in node:
            target = node["$ref"].rsplit("/", 1)[-1]
            if target in LEAF_DEFS:
                out.append((key, target))
            else:
                visit(resolve(node["$ref"]), key)
            return
        for kw in ("oneOf", "anyOf", "allOf"):
            for sub in node.get(kw, []):
                visit(sub, key)
        types = node.get("type")
        types = types if isinstance(types, list) else [types]
        if "string" in types:
            out.append((key, "enum" if "enum" in node else "string"))
        if "object" in types or "properties" in node:
            for prop, sub in node.get("properties", {}).items():
                visit(sub, f"{key}.{prop}" if key else prop)
            extra = node.get("additionalProperties", True)
            if extra is not False:
                out.append((f"{key}{{}}", "keys:name" if node.get("propertyNames") == NAME_REF else "keys:free"))
                visit(extra, f"{key}.<key>")
        if "array" in types or "items" in node:
            visit(node.get("items"), f"{key}[]")

    visit(schema, "")
    return out


def name_like(key: str) -> bool:
    """Whether a key path is, by its property name, a name or a list of names."""
    last = re.split(r"[.]", key.replace("[]", "").replace("{}", ""))[-1]
    return last in NAME_PROPERTIES


def problems(schema) -> list[str]:
    """Everything in the schema that breaks the naming rules (empty for the shipped schema)."""
    out = []
    for key, kind in walk(schema):
        if kind == "keys:free":
            out.append(f"{key}: mapping keys without propertyNames {NAME_REF}")
        elif kind == "string" and not any(fnmatch.fnmatchcase(key, p) for p in NOT_NAMES):
            out.append(f"{key}: string that is neither a name ($defs/name), an expression, an enum nor in NOT_NAMES")
        elif name_like(key) and kind not in ("name", "keys:name", "enum"):
            out.append(f"{key}: name-like property without $defs/name (is {kind})")
    return out


def test_every_name_in_the_schema_carries_the_pattern():
    schema = ncfg.load_schema()
    assert problems(schema) == []
    found = {key for key, kind in walk(schema) if kind in ("name", "keys:name")}
    assert found >= {
        "analysis",
        "samples[].name",
        "systematics[].name",
        "systematics[].samples[]",
        "features[].name",
        "regions[].name",
        "region_classifier.classes{}",
        "region_classifier.classes.<key>[]",
        "region_classifier.features[]",
        "morphing.poi",
        "morphing.coefficients{}",
        "morphing.basis.points{}",
        "training.features[]",
        "training.reference{}",
        "plots.sensitivity.x",
        "plots.sensitivity.y",
        "validation.linearity_nuisances[]{}",
    }
    # the fixed process names of the simulator are wildcards too
    enum = schema["properties"]["simulation"]["properties"]["processes"]["items"]["enum"]
    assert all(re.fullmatch(ncfg.NAME_PATTERN, p) for p in enum)
    # every directory the schema declares is checked by nsbi.config
    dirs = {key for key, kind in walk(schema) if kind == "directory"}
    assert dirs == {".".join(k) for k in ncfg.OUTPUT_DIRS}


def test_the_pattern_is_defined_once():
    text = (Path(ncfg.__file__).parent / "schemas" / ncfg.SCHEMA_RESOURCE).read_text()
    assert text.count("pattern:") == 1
    assert ncfg.load_schema()["$defs"]["name"]["pattern"] == ncfg.NAME_PATTERN
    for good in ("S", "qqZZ", "cos_theta_star", "hzz4l_test", "LES", "x1_2"):
        assert re.fullmatch(ncfg.NAME_PATTERN, good)
    for bad in (ESCAPE, "a/b", "a.b", "..", "a-b", "a b", "_a", "a_", "a__b", "1a", "", "a\n"):
        assert not re.fullmatch(ncfg.NAME_PATTERN, bad), bad


@pytest.mark.parametrize(
    "addition, expected",
    [
        ({"type": "object", "additionalProperties": False, "properties": {"name": {"type": "string"}}}, "extra.name"),
        (
            {
                "type": "object",
                "additionalProperties": False,
                "properties": {"name": {"enum": ["a"], "type": "string"}},
            },
            None,
        ),
        ({"type": "object", "properties": {"name": NAME_REF}}, "extra{}: mapping keys"),
        ({"type": "object", "additionalProperties": {"type": "number"}}, "extra{}: mapping keys"),
        ({"type": "array", "items": {"type": "string"}}, "extra[]: string"),
        ({"type": "object", "propertyNames": NAME_REF, "additionalProperties": {"type": "string"}}, "extra.<key>"),
        (
            {
                "type": "object",
                "additionalProperties": False,
                "properties": {"samples": {"items": {"$ref": "#/$defs/expression"}}},
            },
            "extra.samples[]: name-like",
        ),
        ({"type": "object", "additionalProperties": False, "properties": {"poi": {"type": "integer"}}}, None),
        (
            {"type": "object", "additionalProperties": False, "properties": {"poi": {"$ref": "#/$defs/expression"}}},
            "extra.poi: name-like",
        ),
    ],
)
def test_the_schema_walk_catches_a_new_unpatterned_key(addition, expected):
    """A key added without the pattern makes the schema test fail."""
    schema = copy.deepcopy(ncfg.load_schema())
    schema["properties"]["extra"] = addition
    found = problems(schema)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(expected), found


@pytest.fixture
def raw():
    return yaml.safe_load(TEST_CONFIG.read_text())


def _set_key(mapping, old, new):
    """Rename a mapping key in place, keeping the order."""
    items = [(new if k == old else k, v) for k, v in mapping.items()]
    mapping.clear()
    mapping.update(items)


def _poi(r, value):
    r["morphing"]["poi"] = value


def _basis_point(r, value):
    del r["morphing"]["coefficients"]
    r["morphing"]["basis"] = {"functions": ["mu", "1"], "points": {"B": 0.0, value: 1.0}}


# one traversal attempt per kind of name: mutation of config/test.yaml, config key in the error
TRAVERSALS = {
    "analysis": (lambda r, v: r.update(analysis=v), "analysis"),
    "sample": (lambda r, v: r["samples"][1].update(name=v), r"samples\[1\]\.name"),
    "region": (lambda r, v: r["regions"][0].update(name=v), r"regions\[0\]\.name"),
    "systematic": (lambda r, v: r["systematics"][2].update(name=v), r"systematics\[2\]\.name"),
    "systematic samples": (lambda r, v: r["systematics"][1].update(samples=[v]), r"systematics\[1\]\.samples\[0\]"),
    "feature": (lambda r, v: r["features"][3].update(name=v), r"features\[3\]\.name"),
    "region-classifier class": (
        lambda r, v: _set_key(r["region_classifier"]["classes"], "ggF", v),
        r"region_classifier\.classes",
    ),
    "region-classifier class member": (
        lambda r, v: r["region_classifier"]["classes"]["qqZZ"].append(v),
        r"region_classifier\.classes\.qqZZ\[1\]",
    ),
    "region-classifier features": (
        lambda r, v: r["region_classifier"].update(features=["m4l", v]),
        r"region_classifier\.features\[1\]",
    ),
    "poi": (_poi, r"morphing\.poi"),
    "morphing coefficient": (lambda r, v: _set_key(r["morphing"]["coefficients"], "S", v), r"morphing\.coefficients"),
    "morphing basis point": (_basis_point, r"morphing\.basis\.points"),
    "training feature": (lambda r, v: r["training"].update(features=[v]), r"training\.features\[0\]"),
    "training reference": (lambda r, v: _set_key(r["training"]["reference"], "SBI", v), r"training\.reference"),
    "sensitivity x": (lambda r, v: r.update(plots={"sensitivity": {"x": v}}), r"plots\.sensitivity\.x"),
    "sensitivity y": (lambda r, v: r.update(plots={"sensitivity": {"y": v}}), r"plots\.sensitivity\.y"),
    "nuisance parameter": (
        lambda r, v: r["validation"].update(linearity_nuisances=[{v: 1.0}]),
        r"validation\.linearity_nuisances\[0\]",
    ),
}


@pytest.mark.parametrize("value", [ESCAPE, "a/b", "x.png", "a-b"])
@pytest.mark.parametrize("kind", list(TRAVERSALS))
def test_traversal_in_any_name_is_rejected_naming_the_key(raw, kind, value):
    mutate, key = TRAVERSALS[kind]
    mutate(raw, value)
    with pytest.raises(ncfg.ConfigError, match=rf"^config key '{key}': (key )?'{re.escape(value)}' does not match"):
        ncfg.validate(raw)


def test_the_mutations_are_valid_with_a_good_name(raw):
    """The traversal mutations above change only the name: with a valid new name the
    error (if any) is a semantic one, not the pattern."""
    for kind, (mutate, _) in TRAVERSALS.items():
        r = copy.deepcopy(raw)
        mutate(r, "ok_name")
        try:
            ncfg.validate(r)
        except ncfg.ConfigError as err:
            assert "does not match" not in str(err), (kind, err)


@pytest.mark.parametrize("key", ncfg.OUTPUT_DIRS)
@pytest.mark.parametrize("value", ["..", "../results", "results/../..", "a/../../b", "a\\..\\..\\b", "results/.."])
def test_relative_output_dirs_with_dotdot_are_rejected(raw, key, value):
    """`..` is refused in a relative output directory (even where it would end inside)."""
    node = raw
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = value
    with pytest.raises(
        ncfg.ConfigError, match=rf"^config key '{re.escape('.'.join(key))}': relative path .* contains '\.\.'"
    ):
        ncfg.validate(raw)


@pytest.mark.parametrize(
    "value", ["results", "out/nsbi", "./results", "results/./x", "/tmp/nsbi-results", "/data/../x"]
)
def test_output_dirs_inside_the_working_directory_or_absolute_are_allowed(raw, value):
    raw["output_dir"] = value
    raw["simulation"]["output_dir"] = value
    cfg = ncfg.validate(raw)
    res = Path(ncfg.results_dir(cfg))
    if not res.is_absolute():
        cwd = Path.cwd().resolve()
        assert (cwd / res).resolve().is_relative_to(cwd)


def test_empty_output_dir_is_rejected(raw):
    raw["output_dir"] = ""
    with pytest.raises(ncfg.ConfigError, match=r"^config key 'output_dir': '' should be non-empty"):
        ncfg.validate(raw)


def test_target_names_are_built_from_names(raw):
    """Ensemble/target names (paths under train/ and eval/, wildcards) are sample names or
    ``<sample>__<systematic>_<direction>``: since a name has no '__', they parse back."""
    cfg = ncfg.validate(raw)
    name = ncfg.NAME_PATTERN.strip("^$")
    targets = ntgt.target_names(cfg)
    assert len(targets) > len(ncfg.basis_samples(cfg))
    for t in targets:
        assert re.fullmatch(rf"{name}(__{name}_(up|down))?", t), t
        proc, syst, direction = ntgt.parse_target(t)
        assert t == (proc if syst is None else f"{proc}__{syst}_{direction}")
        assert ".." not in ntgt.member_dir("results/a", "SR", t, 0).split("/")


def test_configs_are_read_with_safe_load_only():
    """No YAML loader of nsbi or its scripts can construct Python objects from a config."""
    unsafe = re.compile(r"yaml\.(load|full_load|unsafe_load|load_all)\s*\(|FullLoader|UnsafeLoader|yaml\.Loader\b")
    hits = [
        f"{path.relative_to(ROOT)}:{i}"
        for folder in ("nsbi", "scripts")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if unsafe.search(line)
    ]
    assert hits == []


def test_snakemake_refuses_a_class_name_that_escapes(tmp_path):
    """The reported case: a region-classifier class named like a path fails when the
    workflow loads (`snakemake -n`), naming the key, before any output is planned."""
    text = TEST_CONFIG.read_text()
    assert "    ggF: [S, SBI, B]\n" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("    ggF: [S, SBI, B]\n", "    ../../../../../../../tmp/escaped: [S, SBI, B]\n"))
    proc = snakemake("-n", "--configfile", str(bad), "--directory", str(tmp_path), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key 'region_classifier.classes': key '../../../../../../../tmp/escaped' does not match" in out
    assert "tmp/escaped.png" not in out
