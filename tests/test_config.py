"""Schema and semantic validation of the analysis configuration."""

import copy
import re
import tomllib
import warnings
from importlib import resources
from pathlib import Path

import pytest
import yaml

from nsbi import config as ncfg

DEMO = "config/config.yaml"


@pytest.fixture(scope="module")
def _demo_raw():
    with open(DEMO) as fh:
        return yaml.safe_load(fh)


@pytest.fixture
def raw(_demo_raw):
    """The demo config as loaded from YAML, a fresh copy per test (tests edit it)."""
    return copy.deepcopy(_demo_raw)


def test_schema_is_package_data():
    """The schema is a real file inside the package, loaded with importlib.resources, and
    the package data of pyproject.toml ships it."""
    ref = resources.files(ncfg.SCHEMA_PACKAGE).joinpath(ncfg.SCHEMA_RESOURCE)
    path = Path(str(ref))
    assert ref.is_file() and not path.is_symlink()
    assert path.parent == Path(ncfg.__file__).resolve().parent / "schemas"
    assert ncfg.load_schema() == yaml.safe_load(ref.read_text())
    assert ncfg.load_schema(path)["properties"].keys() >= {"samples", "regions", "training"}
    pyproject = tomllib.loads((Path(ncfg.__file__).resolve().parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["nsbi"]
    assert any(Path("schemas", ncfg.SCHEMA_RESOURCE).match(p) for p in patterns)


def test_demo_and_test_configs_validate():
    for path in (DEMO, "config/test.yaml"):
        cfg = ncfg.load(path)
        assert cfg["input"]["event_key"] == "event_number"
        assert ncfg.mc_samples(cfg) == ["S", "SBI", "B", "qqZZ"]
    # the demo lists qq->ZZ as a basis sample with coefficient "1", the test config as a background
    assert ncfg.basis_samples(ncfg.load(DEMO)) == ["S", "SBI", "B", "qqZZ"]
    test = ncfg.load("config/test.yaml")
    assert ncfg.basis_samples(test) == ["S", "SBI", "B"] and ncfg.background_samples(test) == ["qqZZ"]


def test_a_background_sample_is_trained_and_modelled_with_coefficient_one(raw):
    from nsbi.build import morphing_at
    from nsbi.train import targets as ntgt

    r = copy.deepcopy(raw)
    r["samples"][3]["type"] = "background"
    del r["morphing"]["coefficients"]["qqZZ"]
    del r["training"]["reference"]
    cfg = ncfg.validate(r)
    # its ratio to the reference and its own shape systematics are learned
    assert ntgt.ratio_processes(cfg) == ["S", "SBI", "B", "qqZZ"]
    assert {(s, d) for p, s, d in ntgt.syst_targets(cfg) if p == "qqZZ"} == {
        ("LES", "up"),
        ("LES", "down"),
        ("qcdscale", "up"),
        ("qcdscale", "down"),
    }
    # the default reference covers every process, background included
    assert ntgt.reference(cfg) == {"S": 1.0, "SBI": 1.0, "B": 1.0, "qqZZ": 1.0}
    assert morphing_at(cfg, 4.0)["qqZZ"] == 1.0 and morphing_at(cfg, 4.0)["S"] == pytest.approx(2.0)


def test_defaults_are_filled(raw):
    r = copy.deepcopy(raw)
    del r["training"]
    # the keys without a default (a default would name something of the demo)
    r["fit"] = {"histogram_baseline": {"observable": "m4l", "binning": [220.0, 500.0, 1000.0]}}
    cfg = ncfg.validate(r)
    assert cfg["training"]["members"] == 5
    assert cfg["training"]["hidden"] == [64, 64, 64]
    assert cfg["fit"]["scan"] == {"low": 0.0, "high": 3.0, "points": 31}
    assert cfg["fit"]["pyhf_check"]["rtol_nll"] == 1e-8


def test_variations_and_targets(raw):
    cfg = ncfg.validate(raw)
    assert ncfg.variations(cfg, "S") == ["nominal", "LES_up", "LES_down", "kfactor_up", "kfactor_down"]
    assert ncfg.variations(cfg, "qqZZ") == ["nominal", "LES_up", "LES_down", "qcdscale_up", "qcdscale_down"]
    assert ncfg.variations(cfg, "data") == ["nominal"]
    targets = ncfg.prep_targets(cfg)
    assert len(targets) == len(set(targets)) == 2 * (4 * 5 + 1)
    spec = ncfg.variation_inputs(cfg, "SBI", "LES_down")
    assert spec["files"] == ["results/hzz4l/ntuples/SBI_LES_down.root"]
    assert spec["files_key"] == "systematics[0].down.files"
    spec = ncfg.variation_inputs(cfg, "B", "kfactor_up")
    assert spec["weight"] == "weight_kfactor_up" and spec["weight_key"] == "systematics[1].up.weight"


def _mutate(raw, fn):
    r = copy.deepcopy(raw)
    fn(r)
    return r


@pytest.mark.parametrize(
    "mutation, message",
    [
        (lambda r: r.update(colour="blue"), r"config key\(s\) colour: unknown key"),
        (lambda r: r["training"].update(hiden=[3]), r"training\.hiden: unknown key"),
        (lambda r: r["training"].update(members="five"), r"'training\.members': 'five' is not of type 'integer'"),
        (lambda r: r["samples"][0].update(type="signal"), r"'samples\[0\]\.type': 'signal' is not one of"),
        (lambda r: r.pop("regions"), r"'regions': required key is missing"),
        (lambda r: r["samples"][1].update(name="S"), r"'samples\[1\]\.name': duplicate name 'S'"),
        (
            lambda r: r["systematics"][1].update(samples=["ttZ"]),
            r"'systematics\[1\]\.samples\[0\]': unknown sample 'ttZ'",
        ),
        (
            lambda r: r["systematics"][1]["up"].update(files=["x.root"]),
            r"'systematics\[1\]\.up': a 'weight' systematic takes weight",
        ),
        (lambda r: r["systematics"][1].pop("down"), r"'systematics\[1\]': only 'up' given"),
        (lambda r: r["features"][0].update(expr="__import__('os')"), r"'features\[0\]\.expr': unknown function"),
        (lambda r: r["regions"][0].update(selection="m4l >"), r"'regions\[0\]\.selection': invalid syntax"),
        (lambda r: r["regions"][1].pop("binning"), r"'regions\[1\]\.binning': required for a binned region"),
        (lambda r: r["regions"][1].update(binning=[1, 3, 2]), r"'regions\[1\]\.binning': bin edges must increase"),
        (
            lambda r: r["fit"]["histogram_baseline"].pop("observable"),
            r"'fit\.histogram_baseline\.observable': required, the histogram baseline bins",
        ),
        (lambda r: r["input"].pop("event_key"), r"'input\.event_key': required key is missing"),
        (
            lambda r: (r["input"].pop("tree"), r["simulation"].update(enabled=False)),
            r"'samples\[0\]\.tree': sample 'S' names no tree; give it one, or give input\.tree",
        ),
        (lambda r: r["input"].pop("tree"), r"'samples\[0\]\.tree': sample 'S' names no tree"),
        (
            lambda r: r["fit"]["histogram_baseline"].pop("binning"),
            r"'fit\.histogram_baseline\.binning': required, the histogram baseline bins the unbinned region\(s\) \['SR'\]",
        ),
        (
            lambda r: r["morphing"]["coefficients"].update(S="k * mu"),
            r"'morphing\.coefficients\.S': unknown name\(s\) k",
        ),
        (
            lambda r: r["morphing"]["coefficients"].update(data="1"),
            r"'morphing\.coefficients\.data': not a basis sample",
        ),
        (
            lambda r: r["samples"][3].update(type="background"),
            r"'morphing\.coefficients\.qqZZ': 'qqZZ' has type 'background', whose coefficient is 1",
        ),
        (
            lambda r: r["training"].update(reference={"data": 1.0}),
            r"'training\.reference\.data': not a Monte Carlo sample",
        ),
        (lambda r: r["training"].update(features=["mjj"]), r"'training\.features\[0\]': unknown feature 'mjj'"),
        (lambda r: r["samples"][0].update(name="S/1"), r"'samples\[0\]\.name': 'S/1' does not match"),
        (lambda r: r["simulation"].update(processes=["ttbar"]), r"'simulation\.processes\[0\]': 'ttbar' is not one of"),
        (
            lambda r: r["validation"].update(linearity_nuisances=[{"JES": 1.0}]),
            r"'validation\.linearity_nuisances\[0\]\.JES': not a systematic",
        ),
        (
            lambda r: r.update(plots={"sensitivity": {"x": "mjj"}}),
            r"'plots\.sensitivity\.x': 'mjj' is not a training feature",
        ),
        (
            lambda r: r.update(plots={"sensitivity": {"poi_values": [-1.0]}}),
            r"'plots\.sensitivity\.poi_values\[0\]': -1\.0 is outside",
        ),
    ],
)
def test_bad_configs_are_rejected_naming_the_key(raw, mutation, message):
    with pytest.raises(ncfg.ConfigError, match=message):
        ncfg.validate(_mutate(raw, mutation))


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ncfg.ConfigError, match="does not exist"):
        ncfg.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("analysis: [unclosed\n")
    with pytest.raises(ncfg.ConfigError, match="invalid YAML"):
        ncfg.load(bad)
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("analysis: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ncfg.ConfigError, match="invalid YAML"):
        ncfg.load(unsafe)


def test_morphing_basis_derives_the_coefficients(raw):
    """Polynomial morphing in sqrt(mu) from samples at mu = 0, 1, 4 (SBI-like samples named S,
    SBI and B here): the derived f_j reproduce sigma(mu) = Σ_j f_j(mu) sigma(mu_j) for any
    sigma(mu) = a mu + b sqrt(mu) + c, and validation is idempotent."""
    from nsbi.expr import parse

    points = {"B": 0.0, "SBI": 1.0, "S": 4.0}
    raw["morphing"] = {"poi": "mu", "basis": {"functions": ["mu", "sqrt(mu)", "1"], "points": points}}
    cfg = ncfg.validate(raw)
    assert ncfg.validate(cfg)["morphing"]["coefficients"] == cfg["morphing"]["coefficients"]
    a, b, c = 2.0, -3.0, 5.0
    sigma = lambda mu: a * mu + b * mu**0.5 + c  # noqa: E731
    for mu in (0.0, 0.3, 1.0, 2.5, 9.0):
        f = {k: float(parse(v).evaluate({"mu": mu})) for k, v in cfg["morphing"]["coefficients"].items()}
        assert sum(f[k] * sigma(p) for k, p in points.items()) == pytest.approx(sigma(mu), rel=1e-12)
        assert sum(f.values()) == pytest.approx(1.0)  # the constant term
    # qqZZ is not a point: coefficient 1 (not listed)
    assert "qqZZ" not in cfg["morphing"]["coefficients"]


@pytest.mark.parametrize(
    "basis, message",
    [
        (
            {"functions": ["mu", "sqrt(mu)", "1"], "points": {"B": 0.0, "SBI": 1.0}},
            r"3 basis function\(s\) need as many",
        ),
        ({"functions": ["mu", "1"], "points": {"B": 1.0, "SBI": 1.0}}, r"do not determine the basis"),
        (
            {"functions": ["mu", "k"], "points": {"B": 0.0, "SBI": 1.0}},
            r"'morphing\.basis\.functions\[1\]': unknown name",
        ),
        (
            {"functions": ["mu", "1"], "points": {"B": 0.0, "data": 1.0}},
            r"'morphing\.basis\.points\.data': not a basis sample",
        ),
    ],
)
def test_morphing_basis_errors(raw, basis, message):
    raw["morphing"] = {"poi": "mu", "basis": basis}
    with pytest.raises(ncfg.ConfigError, match=message):
        ncfg.validate(raw)


def test_morphing_needs_coefficients_or_basis(raw):
    raw["morphing"] = {"poi": "mu"}
    with pytest.raises(ncfg.ConfigError, match="either 'coefficients' or 'basis'"):
        ncfg.validate(raw)
    raw["morphing"] = {
        "poi": "mu",
        "coefficients": {"S": "mu"},
        "basis": {"functions": ["mu", "1"], "points": {"B": 0.0, "SBI": 1.0}},
    }
    with pytest.raises(ncfg.ConfigError, match="not both"):
        ncfg.validate(raw)


def _demo():
    with open(DEMO) as fh:
        return yaml.safe_load(fh)


def test_old_coverage_key_is_read_with_a_deprecation_warning(tmp_path):
    """validation.coverage.mu_true (the earlier name) is moved to validation.coverage.poi_true
    with a DeprecationWarning that names both keys and points at the caller; the caller's dict
    is not changed; giving both keys is an error naming them."""
    r = _demo()
    cov = r["validation"]["coverage"]
    r["validation"]["coverage"] = {"mu_true": [1.0, 2.0], **{k: v for k, v in cov.items() if k != "poi_true"}}
    given = copy.deepcopy(r)
    with pytest.warns(DeprecationWarning) as rec:
        cfg = ncfg.validate(r)
    (w,) = [w for w in rec if issubclass(w.category, DeprecationWarning)]
    assert "'validation.coverage.mu_true'" in str(w.message) and "'validation.coverage.poi_true'" in str(w.message)
    assert w.filename == __file__  # attributed to the code that validated the config
    assert cfg["validation"]["coverage"]["poi_true"] == [1.0, 2.0]
    assert "mu_true" not in cfg["validation"]["coverage"]
    assert list(cfg["validation"]["coverage"])[0] == "poi_true"  # in the old key's place
    assert r == given
    # validation is idempotent (no warning the second time) and load() reads the old key too
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert ncfg.validate(cfg) == cfg
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(r))
    with pytest.warns(DeprecationWarning, match=r"validation\.coverage\.mu_true"):
        assert ncfg.load(path)["validation"]["coverage"]["poi_true"] == [1.0, 2.0]
    # the old key is checked against the grid as the new one
    r["validation"]["coverage"]["mu_true"] = [0.1]
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(ncfg.ConfigError, match=r"poi_true\[0\]': 0\.1 is not a point"),
    ):
        ncfg.validate(r)
    r["validation"]["coverage"]["poi_true"] = [1.0]
    with pytest.raises(
        ncfg.ConfigError,
        match=r"config key 'validation\.coverage\.mu_true': renamed to 'validation\.coverage\.poi_true', which is also given",
    ):
        ncfg.validate(r)
    assert ncfg.validate(_demo())["validation"]["coverage"]["poi_true"] == [0.5, 1.0, 2.0]


def test_poi_label_and_data_label():
    r = _demo()
    cfg = ncfg.validate(r)
    # the demo's POI mu is drawn as the Greek letter (its plots are unchanged)
    assert "poi_label" not in cfg["morphing"] and ncfg.poi_label(cfg) == r"$\mu$"
    assert ncfg.data_label(cfg) == "Data"
    r["morphing"]["poi_label"] = "$c_W$"
    assert ncfg.poi_label(ncfg.validate(r)) == "$c_W$"
    r["morphing"]["poi_label"] = "$c_W"
    with pytest.raises(ncfg.ConfigError, match=r"'morphing\.poi_label': '\$c_W' has an unmatched '\$'"):
        ncfg.validate(r)
    r["morphing"]["poi_label"] = ""
    with pytest.raises(ncfg.ConfigError, match=r"'morphing\.poi_label'"):
        ncfg.validate(r)
    # the default label of other names: Greek letter names as letters, others as plain text
    from nsbi.plotting.labels import default_poi_label

    for name, label in (("cw", "cw"), ("theta", r"$\theta$"), ("mu_ggF", r"$\mu_{\mathrm{ggF}}$"), ("muon", "muon")):
        assert default_poi_label(name) == label
        assert ncfg.poi_label({"morphing": {"poi": name}}) == label
    # the data legend: the data sample's label, else its name; None without a data sample
    del r["morphing"]["poi_label"]
    r["samples"][4]["label"] = "Pseudo-data, 140 fb$^{-1}$"
    assert ncfg.data_label(ncfg.validate(r)) == "Pseudo-data, 140 fb$^{-1}$"
    del r["samples"][4]["label"]
    assert ncfg.data_label(ncfg.validate(r)) == "data"
    del r["samples"][4]
    assert ncfg.data_label(ncfg.validate(r)) is None


def test_no_schema_default_names_anything_of_the_demo():
    """Defaults serve every analysis: none may name a feature, sample, systematic, region, POI,
    tree, branch or the analysis of the demo (the built-in simulator's own section excepted:
    its processes and nuisance parameters are the simulator's vocabulary)."""
    demo = ncfg.load(DEMO)
    names = {demo["analysis"], demo["morphing"]["poi"], demo["input"]["tree"], demo["input"]["event_key"]}
    for section in ("samples", "features", "systematics", "regions"):
        names |= {item["name"] for item in demo[section]}
    names |= {s["weight"] for s in demo["samples"]} - {"1"}

    def defaults(node, path=()):
        if isinstance(node, dict):
            if "default" in node:
                yield path, node["default"]
            for k, v in node.items():
                yield from defaults(v, (*path, k))
        elif isinstance(node, list):
            for v in node:
                yield from defaults(v, path)

    def words(value):
        if isinstance(value, dict):
            return set(value) | {w for v in value.values() for w in words(v)}
        if isinstance(value, list):
            return {w for v in value for w in words(v)}
        return set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", value)) if isinstance(value, str) else set()

    schema = ncfg.load_schema()
    found = {
        "/".join(p): sorted(words(v) & names)
        for p, v in defaults(schema["properties"])
        if p[:2] != ("simulation", "properties") and words(v) & names
    }
    assert not found, f"schema defaults naming the demo: {found}"


def test_fewer_members_than_folds_is_rejected_at_load(raw):
    """Every fold is evaluated by a member that did not train on it (nsbi.train.kfold), so
    members >= folds; the evaluation jobs would otherwise fail long after training."""
    r = copy.deepcopy(raw)
    r["training"]["members"], r["training"]["folds"] = 1, 2
    with pytest.raises(ncfg.ConfigError, match=r"config key 'training.members': 1 member\(s\) for 2 folds"):
        ncfg.validate(r)
    r["training"]["members"] = 2
    assert ncfg.validate(r)["training"]["members"] == 2


def test_limits_option(raw):
    """fit.limits: off by default; when enabled, one (workspace, dataset) target each, and the
    oracle or observed data only where they exist."""
    assert ncfg.limit_targets(ncfg.validate(copy.deepcopy(raw))) == []
    r = copy.deepcopy(raw)
    r["fit"]["limits"] = {"enabled": True, "workspaces": ["nsbi", "oracle"], "datasets": ["observed", "asimov"]}
    assert ncfg.limit_targets(ncfg.validate(r)) == [
        ("nsbi", "observed"),
        ("nsbi", "asimov"),
        ("oracle", "observed"),
        ("oracle", "asimov"),
    ]
    r["simulation"]["enabled"] = False
    with pytest.raises(ncfg.ConfigError, match=r"'fit.limits.workspaces\[1\]': the oracle workspace needs"):
        ncfg.validate(r)
    r = copy.deepcopy(raw)
    r["samples"] = [s for s in r["samples"] if s["type"] != "data"]
    r["fit"]["limits"] = {"enabled": True}
    with pytest.raises(ncfg.ConfigError, match=r"'fit.limits.datasets\[0\]': no sample of type data"):
        ncfg.validate(r)
