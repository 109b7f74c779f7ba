import awkward as ak
import numpy as np
import pytest

from nsbi.expr import ExpressionError, parse


def test_arithmetic_and_names():
    e = parse("mu - sqrt(mu)")
    assert e.names == {"mu"}
    mu = np.array([0.0, 0.25, 1.0, 4.0])
    np.testing.assert_allclose(e.evaluate({"mu": mu}), mu - np.sqrt(mu))


def test_jax_backend():
    import jax.numpy as jnp

    e = parse("1 - sqrt(mu) + 2**3 * pi")
    assert float(e.evaluate({"mu": jnp.asarray(0.49)}, xp=jnp)) == pytest.approx(1 - 0.7 + 8 * np.pi)


def test_selection_logic():
    ns = {"m4l": np.array([200.0, 300.0, 400.0]), "y": np.array([0.1, -3.0, 1.0])}
    sel = parse("(m4l > 220) & (abs(y) < 2.5)").evaluate(ns)
    assert sel.tolist() == [False, False, True]
    sel2 = parse("m4l > 220 and not abs(y) > 2.5").evaluate(ns)
    assert sel2.tolist() == [False, False, True]
    chained = parse("250 < m4l < 500").evaluate(ns)
    assert chained.tolist() == [False, True, True]


def test_jagged_reductions_and_index():
    pt = ak.Array([[50.0, 20.0, 10.0], [30.0], []])
    assert parse("max(pt)").evaluate({"pt": pt}).tolist()[:2] == [50.0, 30.0]
    assert np.isnan(parse("max(pt)").evaluate({"pt": pt})[2])
    assert parse("count(pt)").evaluate({"pt": pt}).tolist() == [3, 1, 0]
    assert parse("sum(pt)").evaluate({"pt": pt}).tolist() == [80.0, 30.0, 0.0]
    second = parse("pt[1]").evaluate({"pt": pt})
    assert second[0] == 20.0 and np.isnan(second[1]) and np.isnan(second[2])
    assert parse("sum(pt > 15)").evaluate({"pt": pt}).tolist() == [2, 1, 0]


@pytest.mark.parametrize(
    "bad, match",
    [
        ("__import__('os').system('ls')", "unknown function"),
        ("x.__class__", "starting with '_'"),
        ("sqrt(x).y", "only allowed on names"),
        ("lambda: 1", "Lambda"),
        ("'abc'", "numeric constants"),
        ("x if y else z", "where"),
        ("sqrt(x, y)", "takes 1"),
        ("x[a]", "integer indices"),
        ("x +", "invalid syntax"),
        ("", "non-empty"),
        ("[1, 2]", "List"),
    ],
)
def test_rejects_unsafe_or_invalid(bad, match):
    with pytest.raises(ExpressionError, match=match):
        parse(bad)


def test_allowed_names_and_missing_names():
    with pytest.raises(ExpressionError, match="unknown name\\(s\\) foo"):
        parse("foo + m4l", allowed_names={"m4l"})
    with pytest.raises(ExpressionError, match="undefined name\\(s\\): bar"):
        parse("bar * 2").evaluate({})


def test_dotted_names_for_collections():
    e = parse("max(Muon.pt) > 20")
    assert e.names == {"Muon.pt"}
    pt = ak.Array([[25.0, 3.0], [10.0]])
    assert e.evaluate({"Muon.pt": pt}).tolist() == [True, False]


def test_max_min_default_for_empty_lists():
    import awkward as ak

    x = ak.Array([[1.0, 5.0], [], [-3.0]])
    assert np.isnan(parse("max(x)").evaluate({"x": x})[1])  # no default: NaN, as before
    np.testing.assert_array_equal(ak.to_numpy(parse("max(x, default=-1)").evaluate({"x": x})), [5.0, -1.0, -3.0])
    np.testing.assert_array_equal(ak.to_numpy(parse("min(x, default=+2.5)").evaluate({"x": x})), [1.0, 2.5, -3.0])
    np.testing.assert_array_equal(parse("max(x, default=7)").evaluate({"x": np.zeros((3, 0))}), [7.0, 7.0, 7.0])
    assert sorted(t for t, _ in parse("max(x) + min(x, default=0) + x[2]").empty_list_terms()) == ["max(x)", "x[2]"]
    for bad, msg in [
        ("sum(x, default=1)", "keyword arguments are not allowed"),
        ("max(x, default=y)", "takes a number"),
        ("max(x, initial=0)", "keyword arguments are not allowed"),
    ]:
        with pytest.raises(ExpressionError, match=msg):
            parse(bad)


@pytest.mark.parametrize(
    "text, fix",
    [
        ("count(Muon.pt) >= 1 & count(Jet.pt) >= 4", "(count(Muon.pt) >= 1) & (count(Jet.pt) >= 4)"),
        ("m4l > 220 | y4l < -1 ", "(m4l > 220) | (y4l < -1)"),
        ("a < 1 ^ b > 2 > c", "(a < 1) ^ (b > 2 > c)"),
    ],
)
def test_bitwise_operator_between_comparisons_is_rejected_with_the_parenthesised_form(text, fix):
    with pytest.raises(ExpressionError, match="binds more tightly than comparisons") as err:
        parse(text)
    assert f"write {fix}" in str(err.value)


def test_c_style_logic_and_intended_bitwise_forms():
    ns = {"a": np.array([0.5, 2.0, 2.0, 0.0]), "b": np.array([5.0, 5.0, 1.0, 9.0]), "flags": np.array([1, 2, 3, 4])}
    ref = ((ns["a"] >= 1) & (ns["b"] >= 4)) | ~(ns["a"] > 0.1)
    np.testing.assert_array_equal(parse("a >= 1 && b >= 4 || !(a > 0.1)").evaluate(ns), ref)
    np.testing.assert_array_equal(parse("(a >= 1) & (b >= 4) | !(a > 0.1)").evaluate(ns), ref)
    np.testing.assert_array_equal(parse("a != 2").evaluate(ns), ns["a"] != 2)
    # a bit test and an explicitly parenthesised operand mean what they say
    np.testing.assert_array_equal(parse("flags & 1 > 0").evaluate(ns), (ns["flags"] & 1) > 0)
    np.testing.assert_array_equal(parse("b >= (1 | flags)").evaluate(ns), ns["b"] >= (1 | ns["flags"]))
