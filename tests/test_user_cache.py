"""nsbi's per-user cache (nsbi.user_cache): compiled schema checks kept on disk and imported by
later processes, with the same verdicts as a check compiled in memory; fast JSON copies."""

import copy
import json
import os
import stat
import subprocess
import sys

import fastjsonschema
import numpy as np
import pytest

from nsbi import user_cache
from nsbi.io import copy_json

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://example.org/schemas/sample.json",
    "type": "object",
    "required": ["name", "data"],
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "data": {"type": "array", "items": {"$ref": "#/$defs/count"}, "minItems": 1},
    },
    "additionalProperties": False,
    "$defs": {"count": {"type": "number", "minimum": 0}},
}
CASES = [
    {"name": "ttbar", "data": [1.0, 2.5]},
    {"name": "ttbar", "data": []},
    {"name": "1bad", "data": [1.0]},
    {"name": "ttbar", "data": [-1.0]},
    {"name": "ttbar", "data": [1.0], "extra": 1},
    {"data": [1.0]},
    [],
]


def verdicts(check):
    out = []
    for case in CASES:
        try:
            check(case)
            out.append(True)
        except fastjsonschema.JsonSchemaException:
            out.append(False)
    return out


EXPECTED = [True, False, False, False, False, False, False]


def test_cached_check_is_written_then_imported_with_the_same_verdicts(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert verdicts(fastjsonschema.compile(SCHEMA)) == EXPECTED
    first = user_cache.compiled_schema_check("sample", SCHEMA)
    files = sorted((tmp_path / "nsbi" / "schemas").glob("sample-*.py"))
    assert len(files) == 1 and verdicts(first) == EXPECTED
    assert not list((tmp_path / "nsbi" / "schemas").glob(".*.tmp"))  # written under a temporary name
    # a later process imports the file: nothing is generated again
    probe = (
        "import fastjsonschema, json, sys\n"
        "from nsbi import user_cache\n"
        "def refuse(*a, **k):\n"
        "    raise AssertionError('generated again')\n"
        "fastjsonschema.compile_to_code = refuse\n"
        f"check = user_cache.compiled_schema_check('sample', json.loads({json.dumps(json.dumps(SCHEMA))}))\n"
        "out = []\n"
        f"for case in json.loads({json.dumps(json.dumps(CASES))}):\n"
        "    try:\n"
        "        check(case); out.append(True)\n"
        "    except fastjsonschema.JsonSchemaException:\n"
        "        out.append(False)\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == EXPECTED
    assert sorted((tmp_path / "nsbi" / "schemas").glob("sample-*.py")) == files


def test_a_changed_schema_or_source_document_gets_its_own_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    user_cache.compiled_schema_check("sample", SCHEMA)
    looser = copy.deepcopy(SCHEMA)
    looser["$defs"]["count"].pop("minimum")
    check = user_cache.compiled_schema_check("sample", looser)
    assert verdicts(check)[3] is True  # -1 allowed now: not the old file's verdict
    user_cache.compiled_schema_check("sample", SCHEMA, sources=[b"a referenced document"])
    assert len(list((tmp_path / "nsbi" / "schemas").glob("sample-*.py"))) == 3


def test_unwritable_or_damaged_cache_still_checks(tmp_path, monkeypatch):
    if os.geteuid() == 0:
        ro = tmp_path / "file-not-dir"
        ro.write_text("")  # a cache root below a file cannot be created, even by root
        monkeypatch.setenv("XDG_CACHE_HOME", str(ro))
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
        monkeypatch.setenv("XDG_CACHE_HOME", str(ro))
    assert verdicts(user_cache.compiled_schema_check("sample", SCHEMA)) == EXPECTED
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "ok"))
    user_cache.compiled_schema_check("sample", SCHEMA)
    (path,) = (tmp_path / "ok" / "nsbi" / "schemas").glob("sample-*.py")
    path.write_text("def broken(:\n")
    assert verdicts(user_cache.compiled_schema_check("sample", SCHEMA)) == EXPECTED
    assert not path.exists()  # removed: the next call writes it again
    assert verdicts(user_cache.compiled_schema_check("sample", SCHEMA)) == EXPECTED and path.is_file()


@pytest.mark.parametrize(
    "doc",
    [
        {"channels": [{"name": "SR", "samples": [{"data": [1.0, 2.0], "modifiers": []}]}], "version": "1.0.0"},
        [1, "a", None, True, 2.5, {"x": (1, 2)}],
    ],
)
def test_copy_json_equals_deepcopy_and_shares_nothing(doc):
    out = copy_json(doc)
    assert out == copy.deepcopy(doc) and type(out) is type(doc)

    def containers(x):
        if isinstance(x, dict):
            yield x
            for v in x.values():
                yield from containers(v)
        elif isinstance(x, (list, tuple)):
            yield x
            for v in x:
                yield from containers(v)

    mutable = [id(c) for c in containers(doc) if not isinstance(c, tuple)]
    assert not set(mutable) & {id(c) for c in containers(out)}


def test_copy_json_copies_arrays():
    a = np.arange(3.0)
    out = copy_json({"a": a})
    out["a"][0] = 5.0
    assert a[0] == 0.0
