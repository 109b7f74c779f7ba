"""The conda environments install the same packages as pyproject.toml."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;@]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject():
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]


def _env_pip(path):
    with open(path) as fh:
        env = yaml.safe_load(fh)
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {_name(r): r for r in pip if not r.startswith("-")}, pip


@pytest.mark.parametrize("env, swap", [("nsbi.yaml", {}), ("nsbi-gpu.yaml", {"onnxruntime": "onnxruntime-gpu"})])
def test_env_matches_pyproject(env, swap):
    # the workflow's conda jobs read every input format (NanoAOD needs no extra): the core
    # dependencies
    project = _pyproject()
    assert project["optional-dependencies"]["nanoaod"] == []
    deps = {_name(d): d for d in project["dependencies"]}
    expected = {swap.get(k, k): (v.replace(k, swap[k], 1) if k in swap else v) for k, v in deps.items()}
    pkgs, raw = _env_pip(ROOT / "envs" / env)
    assert set(pkgs) == set(expected), f"{env}: differs from pyproject.toml"
    for name, req in expected.items():
        assert pkgs[name].replace(" ", "") == req.replace(" ", ""), f"{env}: {pkgs[name]} vs pyproject {req}"
    assert "-e .." in raw, f"{env} must install nsbi itself"


def test_gpu_extra_is_onnxruntime_gpu():
    assert [_name(r) for r in _pyproject()["optional-dependencies"]["gpu"]] == ["onnxruntime-gpu"]
