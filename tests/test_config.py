"""Schema and semantic validation of the analysis configuration."""
import copy

import pytest
import yaml

from nsbi import config as ncfg

DEMO = "config/config.yaml"


@pytest.fixture(scope="module")
def raw():
    with open(DEMO) as fh:
        return yaml.safe_load(fh)


def test_demo_and_test_configs_validate():
    for path in (DEMO, "config/test.yaml"):
        cfg = ncfg.load(path)
        assert cfg["input"]["event_key"] == "event_number"
        assert ncfg.basis_samples(cfg) == ["S", "SBI", "B", "qqZZ"]


def test_defaults_are_filled(raw):
    r = copy.deepcopy(raw)
    del r["training"]
    del r["fit"]
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
        (lambda r: r["systematics"][1].update(samples=["ttZ"]), r"'systematics\[1\]\.samples\[0\]': unknown sample 'ttZ'"),
        (lambda r: r["systematics"][1]["up"].update(files=["x.root"]), r"'systematics\[1\]\.up': a 'weight' systematic takes weight"),
        (lambda r: r["systematics"][1].pop("down"), r"'systematics\[1\]': only 'up' given"),
        (lambda r: r["features"][0].update(expr="__import__('os')"), r"'features\[0\]\.expr': unknown function"),
        (lambda r: r["regions"][0].update(selection="m4l >"), r"'regions\[0\]\.selection': invalid syntax"),
        (lambda r: r["regions"][1].pop("binning"), r"'regions\[1\]\.binning': required for a binned region"),
        (lambda r: r["regions"][1].update(binning=[1, 3, 2]), r"'regions\[1\]\.binning': bin edges must increase"),
        (lambda r: r["morphing"]["coefficients"].update(S="k * mu"), r"'morphing\.coefficients\.S': unknown name\(s\) k"),
        (lambda r: r["morphing"]["coefficients"].update(data="1"), r"'morphing\.coefficients\.data': not a basis sample"),
        (lambda r: r["training"].update(reference={"data": 1.0}), r"'training\.reference\.data': not a Monte Carlo sample"),
        (lambda r: r["training"].update(features=["mjj"]), r"'training\.features\[0\]': unknown feature 'mjj'"),
        (lambda r: r["samples"][0].update(name="S/1"), r"'samples\[0\]\.name': 'S/1' does not match"),
        (lambda r: r["simulation"].update(processes=["ttbar"]), r"'simulation\.processes\[0\]': 'ttbar' is not one of"),
        (lambda r: r.update(plots={"sensitivity": {"x": "mjj"}}), r"'plots\.sensitivity\.x': 'mjj' is not a training feature"),
        (lambda r: r.update(plots={"sensitivity": {"poi_values": [-1.0]}}), r"'plots\.sensitivity\.poi_values\[0\]': -1\.0 is outside"),
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
