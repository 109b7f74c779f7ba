"""nsbi.io: the one JSON writer (strict JSON), the one atomic-write mechanism, NanoAOD
reading without coffea; nsbi.histogram: the one histogramming path."""

import ast
import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from nsbi import io as nio
from nsbi.histogram import fill, histogram

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- JSON writer
def test_write_json_non_finite_as_null_strict(tmp_path):
    obj = {"a": math.nan, "b": [1.0, math.inf, -math.inf], "c": {"d": np.float64("nan"), "e": 2.5}}
    p = nio.write_json(obj, tmp_path / "sub" / "x.json")
    assert p == tmp_path / "sub" / "x.json"
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text and text.endswith("\n")

    def strict(token):  # what a strict parser (any non-Python JSON library) does
        raise ValueError(f"non-standard token {token}")

    back = json.loads(text, parse_constant=strict)
    assert back == {"a": None, "b": [1.0, None, None], "c": {"d": None, "e": 2.5}}


def test_write_json_numpy_types(tmp_path):
    obj = {
        "i": np.int64(3),
        "u": np.uint64(2**63),
        "f": np.float32(0.5),
        "b": np.bool_(True),
        "arr": np.array([[1.0, np.nan], [2.0, 3.0]]),
        "iarr": np.arange(3, dtype=np.int32),
        "t": (1, np.float64(-np.inf)),
        np.int64(7): "numpy key",
    }
    back = json.loads(nio.write_json(obj, tmp_path / "x.json").read_text())
    assert back == {
        "i": 3,
        "u": 2**63,
        "f": 0.5,
        "b": True,
        "arr": [[1.0, None], [2.0, 3.0]],
        "iarr": [0, 1, 2],
        "t": [1, None],
        "7": "numpy key",
    }
    assert isinstance(back["i"], int) and back["b"] is True


def test_write_json_formatting_options(tmp_path):
    obj = {"z": 1, "a": [1, 2]}
    sorted_text = nio.write_json(obj, tmp_path / "s.json").read_text()
    assert sorted_text == json.dumps(obj, indent=2, sort_keys=True) + "\n"
    ordered = nio.write_json(obj, tmp_path / "o.json", indent=1, sort_keys=False).read_text()
    assert ordered == json.dumps(obj, indent=1) + "\n" and ordered.index('"z"') < ordered.index('"a"')


def test_write_json_rejects_unserialisable_without_leaving_files(tmp_path):
    with pytest.raises(TypeError):
        nio.write_json({"x": object()}, tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []


def test_null_to_nan_and_read_json(tmp_path):
    p = nio.write_json(
        {"values": [1.0, math.nan], "intervals": {"68": [math.nan, 2.0]}, "poi": None}, tmp_path / "s.json"
    )
    s = nio.read_json(p, nan_keys=("values", "intervals", "absent"))
    assert s["values"][0] == 1.0 and math.isnan(s["values"][1])
    assert math.isnan(s["intervals"]["68"][0]) and s["intervals"]["68"][1] == 2.0
    assert s["poi"] is None  # only the named numeric fields are converted
    assert np.array(nio.read_json(p)["values"], dtype=float)[1] != 1.0  # float arrays accept null too


# --------------------------------------------------------------------------- atomic writes
def test_atomic_path_success_and_permissions(tmp_path):
    target = tmp_path / "d" / "out.txt"
    with nio.atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.exists() and not target.exists()
        tmp.write_text("hello")
    assert target.read_text() == "hello"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0o600


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_every_writer_gives_results_the_mode_of_a_plain_open(tmp_path, umask):
    """On a shared file system colleagues read the results: JSON, parquet and ROOT files written
    through the atomic writer get 0o666 & ~umask like open() (0o644 / 0o664), not 0o600."""
    writers = {
        "r.json": lambda p: nio.write_json({"a": 1}, p),
        "r.parquet": lambda p: nio.write_parquet({"x": np.arange(3.0)}, p),
        "r.root": lambda p: nio.write_root_tree(p, "t", {"x": np.arange(3.0)}),
        "r.txt": lambda p: open(p, "w").close(),  # the reference: a plain open()
    }
    old = os.umask(umask)
    try:
        for name, write in writers.items():
            write(tmp_path / name)
    finally:
        os.umask(old)
    modes = {name: (tmp_path / name).stat().st_mode & 0o777 for name in writers}
    assert modes == dict.fromkeys(writers, 0o666 & ~umask), {k: oct(v) for k, v in modes.items()}


def test_atomic_path_exception_leaves_no_file_and_no_temp(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError, match="boom"):
        with nio.atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    # an existing output is left untouched by a failed rewrite
    nio.write_json({"v": 1}, target)
    with pytest.raises(RuntimeError):
        with nio.atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


# --------------------------------------------------------------------------- keys of earlier versions
def test_upgrade_poi_keys(tmp_path):
    """One reader of the validation outputs' old keys: renamed in place of the old key (nested
    ones included), one DeprecationWarning naming the file, old and new keys; the argument is
    not changed; an object without old keys is returned as is; old and new key together fail."""
    belt = {"poi": "cw", "mu": [0.0, 1.0], "datasets": {"observed": {"mu_hat": 0.4, "t": [1.0, 0.0]}}}
    path = tmp_path / "belt.json"
    nio.write_json(belt, path)
    with pytest.warns(
        DeprecationWarning, match=r"belt\.json: key\(s\) 'mu', 'mu_hat' .* read as 'poi_values', 'poi_hat'"
    ):
        new = nio.read_validation_json(path, "belt")
    assert new == {"poi": "cw", "poi_values": [0.0, 1.0], "datasets": {"observed": {"poi_hat": 0.4, "t": [1.0, 0.0]}}}
    assert list(new) == ["datasets", "poi_values", "poi"]  # the renamed key keeps its place (written sorted)
    assert "mu" in belt  # not changed
    cov = {"points": [{"mu_true": 0.5, "n_toys": 3}, {"mu_true": 1.0, "n_toys": 4}]}
    with pytest.warns(DeprecationWarning, match="'mu_true'"):
        assert nio.upgrade_poi_keys(cov, "coverage")["points"][1] == {"poi_true": 1.0, "n_toys": 4}
    current = {"poi_values": [0.0], "datasets": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nio.upgrade_poi_keys(current, "belt") is current
    with pytest.raises(ValueError, match=r"old key 'mu_hat' and its new name 'poi_hat'"):
        nio.upgrade_poi_keys({"mu_hat": [1.0], "poi_hat": [1.0]}, "chunk")
    # the warning names the caller outside nsbi, skipping code run with __name__ = None (as
    # Snakemake runs the Snakefile), for which Python would drop the warning
    with pytest.warns(DeprecationWarning) as rec:
        nio.upgrade_poi_keys(cov, "coverage")
        code = compile("nio.upgrade_poi_keys(cov, 'coverage')", "Snakefile", "exec")
        exec(code, {"__name__": None, "nio": nio, "cov": cov})
    assert [w.filename for w in rec] == [__file__, __file__]


# --------------------------------------------------------------------------- one writer (ast)
#: (module, function) -> why it may call json.dumps/json.dump/os.replace itself
ALLOWED = {
    ("nsbi/io.py", "*"): "the writer and the atomic mechanism themselves",
    (
        "nsbi/init.py",
        "_scalar",
    ): "formats one YAML scalar of the config skeleton (a JSON string is YAML); writes no file",
}


def _offending_calls():
    """``(module, function, call)`` for calls that write JSON or rename files by hand."""
    out = []
    for path in sorted((ROOT / "nsbi").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text())
        parents = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            f = node.func
            owner = f.value.id if isinstance(f.value, ast.Name) else None
            name = None
            if owner == "json" and f.attr in ("dump", "dumps"):
                name = f"json.{f.attr}"
            elif owner == "os" and f.attr in ("replace", "rename"):
                name = f"os.{f.attr}"
            elif owner == "tempfile" and f.attr in ("mkstemp", "NamedTemporaryFile"):
                name = f"tempfile.{f.attr}"
            elif f.attr in ("replace", "rename") and len(node.args) == 1 and not node.keywords:
                name = f"<path>.{f.attr}"  # pathlib's rename-onto (str.replace takes two arguments)
            if name is None:
                continue
            fn, p = "<module>", parents.get(node)
            while p is not None:
                if isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    fn = p.name
                    break
                p = parents.get(p)
            out.append((rel, fn, name))
    return out


def test_only_nsbi_io_writes_json_or_renames_files():
    bad = [c for c in _offending_calls() if (c[0], "*") not in ALLOWED and (c[0], c[1]) not in ALLOWED]
    assert not bad, f"use nsbi.io.write_json / nsbi.io.atomic_path instead: {bad}"


def test_one_writer_whitelist_is_not_stale():
    found = {(m, f) for m, f, _ in _offending_calls()}
    for module, fn in ALLOWED:
        assert (module, fn) in found or (fn == "*" and any(m == module for m, _ in found)), (module, fn)


def test_no_private_json_writers_left():
    import nsbi.evaluate
    import nsbi.train.run

    assert not hasattr(nsbi.evaluate, "write_json") and nsbi.train.run.write_json is nio.write_json


# --------------------------------------------------------------------------- NanoAOD without coffea
def test_nanoaod_needs_no_coffea(monkeypatch, tmp_path):
    """`Muon.pt` is read as the jagged branch Muon_pt; coffea is not imported."""
    monkeypatch.setitem(sys.modules, "coffea", None)  # import coffea -> ImportError
    path = tmp_path / "nano.root"
    pts = [[30.0, 20.0], [], [5.0]]
    import awkward as ak

    nio.write_root_tree(path, "Events", {"event": np.arange(3, dtype=np.uint64), "Muon": ak.zip({"pt": ak.Array(pts)})})
    assert nio.check_inputs([str(path)], "Events", ["Muon.pt", "event"], fmt="nanoaod") == 3
    (chunk,) = [ns for _, ns in nio.iterate_chunks([str(path)], "Events", ["Muon.pt"], step_size=10, fmt="nanoaod")]
    assert chunk["Muon.pt"].tolist() == pts
    with pytest.raises(nio.InputError, match=r"reads branch\(es\) Jet_pt"):
        nio.check_inputs(
            [str(path)], "Events", ["Jet.pt"], fmt="nanoaod", users={"Jet.pt": [("features[0].expr", "Jet.pt")]}
        )


# --------------------------------------------------------------------------- chunked reading
def _flat_and_jagged_file(path, n=1000, basket=300):
    """A tree with float32, float64, integer and jagged branches, in baskets of ``basket``."""
    import awkward as ak
    import uproot

    rng = np.random.default_rng(5)
    counts = rng.integers(0, 4, n)
    ev = {
        "event": np.arange(n, dtype=np.uint64),
        "x": rng.normal(size=n),
        "f": rng.normal(size=n).astype(np.float32),
        "k": rng.integers(-5, 5, n).astype(np.int32),
        "pt": ak.unflatten(rng.exponential(20.0, counts.sum()).astype(np.float32), counts),
    }
    with uproot.recreate(path) as fh:
        fh.mktree("events", {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in ev.items()})
        for s in range(0, n, basket):
            fh["events"].extend({k: v[s : s + basket] for k, v in ev.items()})
    return ev


@pytest.mark.parametrize("basket, step", [(300, 1), (300, 7), (300, 250), (300, 700), (1000, 250), (300, 10**6)])
def test_iterate_chunks_reads_each_basket_once_with_the_values_of_uproot_iterate(tmp_path, monkeypatch, basket, step):
    """Branch-by-branch reading gives the values of uproot.iterate (library="ak"): flat branches
    as numpy arrays, jagged ones as awkward arrays, floats as float64; chunks have at most
    ``step`` events, and each branch is read in disjoint ranges that begin and end at its basket
    boundaries (no basket is decompressed twice), also when a basket is larger than a chunk."""
    import awkward as ak
    import uproot
    from uproot.behaviors.TBranch import TBranch

    path = tmp_path / "t.root"
    ev = _flat_and_jagged_file(path, n=400 if step == 1 else 1000, basket=basket)
    names = ["event", "f", "k", "pt", "x"]
    reads: dict[str, list[tuple[int, int]]] = {}
    array = TBranch.array

    def spy(self, *args, entry_start=None, entry_stop=None, **kwargs):
        reads.setdefault(self.name, []).append((entry_start, entry_stop))
        return array(self, *args, entry_start=entry_start, entry_stop=entry_stop, **kwargs)

    monkeypatch.setattr(TBranch, "array", spy)
    chunks = list(nio.iterate_chunks([str(path)], "events", names, step_size=step))
    monkeypatch.undo()
    assert all(0 < len(ns["x"]) <= step for _, ns in chunks)
    n = len(ev["x"])
    for b in names:
        bounds = [a for a, _ in reads[b]] + [reads[b][-1][1]]
        assert bounds == sorted(set(bounds)) and bounds[0] == 0 and bounds[-1] == n, reads[b]
        assert all(x % basket == 0 or x == n for x in bounds), reads[b]
    for b in ("event", "f", "k", "x"):
        got = np.concatenate([ns[b] for _, ns in chunks])
        assert all(isinstance(ns[b], np.ndarray) for _, ns in chunks)
        ref = ak.to_numpy(nio.as_float64(uproot.open(path)["events"][b].array(library="ak")))
        assert got.dtype == ref.dtype and got.dtype == {"event": np.uint64, "k": np.int32}.get(b, np.float64)
        np.testing.assert_array_equal(got, ref)
    pt = ak.concatenate([ns["pt"] for _, ns in chunks])
    assert all(isinstance(ns["pt"], ak.Array) for _, ns in chunks)
    assert str(ak.type(pt).content) == "var * float64"
    assert pt.tolist() == nio.as_float64(ak.values_astype(ev["pt"], np.float32)).tolist()
    ref = list(uproot.iterate({str(path): "events"}, expressions=names, step_size=10**6, library="ak"))
    assert pt.tolist() == nio.as_float64(ref[0]["pt"]).tolist()


def test_iterate_chunks_frees_a_chunk_before_reading_the_next(tmp_path, monkeypatch):
    """The reader keeps no reference to a chunk it has yielded: a consumer that drops each
    chunk has one chunk in memory when the next is read (beyond a basket larger than a chunk,
    whose entries past the chunk are kept for the next)."""
    import weakref

    path = tmp_path / "t.root"
    _flat_and_jagged_file(path, basket=500)
    alive_at_read = []
    previous: list = []
    read = nio._BranchReader.read

    def spy(self, start, stop):
        alive_at_read.append(any(ref() is not None for ref in previous))
        return read(self, start, stop)

    monkeypatch.setattr(nio._BranchReader, "read", spy)
    for _, ns in nio.iterate_chunks([str(path)], "events", ["x", "pt"], step_size=300):
        previous = [weakref.ref(ns["x"]), weakref.ref(ns["pt"])]
        del ns
    assert len(alive_at_read) == 2 * 4 and not any(alive_at_read)  # chunks 0-299, -499, -799, -999


def test_a_damaged_basket_is_an_input_error_naming_the_branch(tmp_path):
    import uproot

    path = tmp_path / "t.root"
    n = 3000
    with uproot.recreate(path) as fh:
        fh.mktree("events", {"a": np.float64, "b": np.float64})
        for s in range(0, n, 1000):
            fh["events"].extend({"a": np.arange(s, s + 1000.0), "b": np.sin(np.arange(s, s + 1000.0))})
    with uproot.open(path) as fh:
        seek = int(fh["events"]["b"].member("fBasketSeek")[1])  # the basket of entries 1000-1999
    data = bytearray(path.read_bytes())
    data[seek + 200 : seek + 264] = b"\xff" * 64  # inside the compressed data
    path.write_bytes(bytes(data))
    chunks = nio.iterate_chunks([str(path)], "events", ["a", "b"], step_size=700, files_key="samples[0].files")
    assert [len(next(chunks)[1]["a"]) for _ in range(2)] == [700, 300]  # entries 0-999 are intact
    with pytest.raises(nio.InputError) as err:
        next(chunks)
    assert str(err.value).startswith(
        f"config key 'samples[0].files': file '{path}' is damaged: tree 'events', branch 'b', entries 1000-1699 "
        "cannot be read"
    )


# --------------------------------------------------------------------------- streamed parquet
def test_parquet_stream_keeps_no_chunk_alive_and_writes_fixed_row_groups(tmp_path):
    """After write() returns, the stream holds no reference to the chunk's arrays (only copies of
    the rows of an unfilled group); the row groups have the fixed size whatever the chunks; only
    string columns are dictionary-encoded."""
    import weakref

    import pyarrow.parquet as pq

    rng = np.random.default_rng(2)
    x, kind = rng.normal(size=1000), np.array(["a", "bb", "ccc"])[rng.integers(0, 3, 1000)]
    refs = []
    with nio.parquet_stream(tmp_path / "s.parquet", row_group_rows=128) as out:
        for a, b in [(0, 5), (5, 300), (300, 301), (301, 1000)]:
            chunk = {"x": x[a:b].copy(), "kind": kind[a:b].copy(), "n": np.arange(a, b, dtype=np.uint64)}
            out.write(chunk)
            refs += [weakref.ref(v) for v in chunk.values()]
            del chunk
            assert all(r() is None for r in refs)
    back = nio.read_parquet(tmp_path / "s.parquet")
    np.testing.assert_array_equal(back["x"], x)
    np.testing.assert_array_equal(back["kind"], kind)
    np.testing.assert_array_equal(back["n"], np.arange(1000, dtype=np.uint64))
    meta = pq.ParquetFile(tmp_path / "s.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [128] * 7 + [104]
    encodings = {meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i).encodings for i in range(3)}
    assert "RLE_DICTIONARY" in encodings["kind"] and "RLE_DICTIONARY" not in encodings["x"]
    nio.write_parquet({"x": x, "kind": kind, "n": np.arange(1000, dtype=np.uint64)}, tmp_path / "one.parquet")
    assert nio.parquet_num_rows(tmp_path / "one.parquet") == 1000


class _OneColumnAtATime(dict):
    """Columns handed out as fresh copies; a lookup while an earlier one is alive fails."""

    def __init__(self, columns):
        super().__init__(columns)
        self.alive = []

    def __getitem__(self, key):
        import weakref

        assert all(r() is None for r in self.alive), "a column is still held"
        values = super().__getitem__(key).copy()
        self.alive.append(weakref.ref(values))
        return values


def test_parquet_stream_writes_selected_rows_one_column_at_a_time(tmp_path):
    """write(columns, rows) writes the file write() writes for those rows (the same bytes), in
    row groups that straddle the chunks, looking up one column at a time; iter_row_groups gives
    each row group as a mapping whose columns (read-only views for numbers) are read on lookup."""
    rng = np.random.default_rng(3)
    n = 1000
    cols = {"x": rng.normal(size=n), "kind": np.array(["a", "bb", "ccc"])[rng.integers(0, 3, n)]}
    cols["n"] = np.arange(n, dtype=np.uint64)
    nio.write_parquet(cols, tmp_path / "in.parquet")
    keep = cols["x"] > -0.3
    with nio.parquet_stream(tmp_path / "ref.parquet", row_group_rows=100) as out:
        for a, b in [(0, 128), (128, 256), (256, 1000)]:
            out.write({k: v[a:b][keep[a:b]] for k, v in cols.items()})
    with nio.parquet_stream(tmp_path / "rows.parquet", row_group_rows=100) as out:
        for a, b in [(0, 128), (128, 256), (256, 1000)]:
            out.write(_OneColumnAtATime({k: v[a:b] for k, v in cols.items()}), np.flatnonzero(keep[a:b]))
        assert out.n_rows == int(keep.sum())
    assert (tmp_path / "rows.parquet").read_bytes() == (tmp_path / "ref.parquet").read_bytes()
    groups = list(nio.iter_row_groups(tmp_path / "rows.parquet"))
    assert [g.num_rows for g in groups] == [100] * (int(keep.sum()) // 100) + [int(keep.sum()) % 100]
    assert list(groups[0]) == ["x", "kind", "n"] and len(groups[0]) == 3 and "y" not in groups[0]
    assert not groups[0]["x"].flags.writeable and groups[0]["n"].dtype == np.uint64
    for k in cols:
        np.testing.assert_array_equal(np.concatenate([g[k] for g in groups]), cols[k][keep])
    with pytest.raises(KeyError):
        groups[0]["y"]


def test_coffea_is_only_a_test_dependency():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("coffea") for d in project["dependencies"])
    assert project["optional-dependencies"]["nanoaod"] == []
    assert "coffea>=2024.4" in project["optional-dependencies"]["test"]


# --------------------------------------------------------------------------- histograms
def _reference_clip(values, weights, edges):
    """The histogram-baseline workspace's binning before nsbi.histogram (under/overflow into
    the edge bins, NaN dropped), written out independently."""
    x = np.clip(values, edges[0], np.nextafter(edges[-1], -np.inf))
    idx = np.searchsorted(edges, x, side="right") - 1
    n = len(edges) - 1
    return np.bincount(idx, weights, minlength=n)[:n], np.bincount(idx, weights**2, minlength=n)[:n]


@pytest.mark.parametrize("edges", [np.linspace(-3, 3, 13), np.array([-2.5, -1.0, 0.0, 0.25, 3.0])])
def test_histogram_clip_matches_workspace_binning_and_numpy(edges):
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.normal(0, 2, 20_000), [np.nan, np.inf, -np.inf, edges[0], edges[-1], edges[2]]])
    w = rng.normal(1, 0.4, len(x))
    sumw, sumw2 = histogram(x, edges, w)
    ref_w, ref_w2 = _reference_clip(x, w, edges)
    np.testing.assert_array_equal(sumw, ref_w)  # bit for bit: the workspace is unchanged
    np.testing.assert_array_equal(sumw2, ref_w2)
    # against numpy.histogram of the values with the overflow moved into the edge bins
    ok = ~np.isnan(x)
    xc = np.clip(x[ok], edges[0], edges[-1])
    np.testing.assert_allclose(sumw, np.histogram(xc, edges, weights=w[ok])[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sumw2, np.histogram(xc, edges, weights=w[ok] ** 2)[0], rtol=1e-12, atol=1e-12)
    assert sumw.sum() == pytest.approx(w[ok].sum(), rel=1e-12)


def test_histogram_drop_matches_numpy_and_unweighted_counts():
    rng = np.random.default_rng(12)
    edges = np.array([0.0, 0.5, 1.5, 2.0])
    x = np.concatenate([rng.uniform(-1, 3, 5000), [2.0, 0.0, np.nan]])
    w = rng.exponential(1.0, len(x))
    sumw, sumw2 = histogram(x, edges, w, flow="drop")
    np.testing.assert_allclose(sumw, np.histogram(x, edges, weights=w)[0], rtol=1e-12)
    np.testing.assert_allclose(sumw2, np.histogram(x, edges, weights=w**2)[0], rtol=1e-12)
    counts, var = histogram(x, edges, flow="drop")
    np.testing.assert_array_equal(counts, np.histogram(x, edges)[0])
    np.testing.assert_array_equal(var, counts)
    with pytest.raises(ValueError, match="flow"):
        histogram(x, edges, w, flow="wrap")
    with pytest.raises(ValueError, match="increasing"):
        histogram(x, [1.0, 0.0], w)


def test_fill_2d_matches_numpy_histogram2d():
    rng = np.random.default_rng(13)
    x, y, w = rng.normal(0, 1, 3000), rng.normal(0, 1, 3000), rng.normal(1, 0.2, 3000)
    ex, ey = np.linspace(-1, 1, 5), np.array([-2.0, 0.0, 0.5, 2.0])
    h = fill((x, y), (ex, ey), w)
    xc = np.clip(x, ex[0], ex[-1])
    yc = np.clip(y, ey[0], ey[-1])
    np.testing.assert_allclose(h.values(), np.histogram2d(xc, yc, (ex, ey), weights=w)[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h.variances(), np.histogram2d(xc, yc, (ex, ey), weights=w**2)[0], rtol=1e-12)


@pytest.mark.parametrize("step", [1, 7, 300, 5000])
def test_rntuple_input_reads_like_uproot_iterate(tmp_path, step):
    """uproot writes an RNTuple for ``file[name] = {...}`` (what a user's own script may do):
    it is read range by range with the values of uproot.iterate (floats as float64, jagged
    fields as awkward arrays, flat ones as numpy arrays)."""
    import awkward as ak
    import uproot

    from nsbi.io import iterate_chunks

    rng = np.random.default_rng(4)
    n = 1000
    jets = ak.Array([list(rng.normal(size=k)) for k in rng.integers(0, 4, n)])
    cols = {"k": np.arange(n, dtype=np.uint64), "x": rng.normal(size=n).astype(np.float32), "j": jets}
    path = tmp_path / "rn.root"
    with uproot.recreate(path) as fh:
        fh["T"] = cols
    with uproot.open(path) as fh:
        assert "RNTuple" in type(fh["T"]).__name__
    chunks = [ns for _, ns in iterate_chunks([str(path)], "T", ["k", "x", "j"], step_size=step)]
    assert [len(c["k"]) for c in chunks] == [min(step, n - s) for s in range(0, n, step)]
    got = {name: np.concatenate([np.asarray(c[name]) for c in chunks]) for name in ("k", "x")}
    np.testing.assert_array_equal(got["k"], cols["k"])
    assert isinstance(chunks[0]["x"], np.ndarray) and chunks[0]["x"].dtype == np.float64
    np.testing.assert_array_equal(got["x"], cols["x"].astype(np.float64))
    assert ak.to_list(ak.concatenate([c["j"] for c in chunks])) == ak.to_list(jets)
