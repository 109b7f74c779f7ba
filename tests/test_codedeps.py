"""Code dependencies of the workflow scripts, computed from their imports (nsbi.codedeps)."""

import modulefinder
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

from nsbi.codedeps import find_module, module_imports, script_dependencies

SCRIPTS = sorted((ROOT / "scripts").glob("*.py"))


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def rel(paths, root):
    return sorted(str(Path(p).relative_to(root)) for p in paths)


def test_module_imports_forms():
    names, from_names = module_imports(
        textwrap.dedent(
            """
            import os, pkg.a.b as ab
            from pkg.c import d, e as f
            from . import sibling
            from ..up import thing
            from .x.y import *

            def later():
                import pkg.lazy
                from importlib import import_module
                import_module("pkg.dynamic")
                __import__("pkg.dunder")
                import_module(name_not_literal)
            """
        ),
        module="pkg.sub.mod",
    )
    assert names == {
        "os",
        "pkg.a.b",
        "pkg.c",
        "pkg.sub",
        "pkg.up",
        "pkg.sub.x.y",
        "pkg.lazy",
        "importlib",
        "pkg.dynamic",
        "pkg.dunder",
    }
    assert from_names == {"pkg.c.d", "pkg.c.e", "pkg.sub.sibling", "pkg.up.thing", "importlib.import_module"}


def test_relative_imports_of_a_package_and_of_a_script():
    # in a package's __init__, "." is the package itself
    names, from_names = module_imports("from . import a\nfrom .b import c\n", module="pkg.sub", is_package=True)
    assert names == {"pkg.sub", "pkg.sub.b"} and from_names == {"pkg.sub.a", "pkg.sub.b.c"}
    # a script has no package: relative imports cannot be resolved and are dropped
    assert module_imports("from . import a\nfrom .. import b\n") == (set(), set())
    # beyond the top-level package
    assert module_imports("from ... import a\n", module="pkg.mod") == (set(), set())


@pytest.fixture
def synthetic(tmp_path):
    """A package with every import form, a cycle and modules no script reaches."""
    write(
        tmp_path,
        {
            "pkg/__init__.py": '"""top"""\n',
            "pkg/alpha.py": "import numpy as np\nfrom pkg import beta\n",  # 'from pkg import submodule'
            "pkg/beta.py": "from .gamma import g\n",  # relative
            "pkg/gamma.py": "def g():\n    from . import alpha  # cycle, function-level\n    return alpha\n",
            "pkg/unused.py": "import pkg.alpha\n",
            "pkg/sub/__init__.py": "from .inner import x\n",
            "pkg/sub/inner.py": "x = 1\n",
            "pkg/sub/deep/__init__.py": "",
            "pkg/sub/deep/leaf.py": "from ...alpha import np\n",
            "pkg/other/__init__.py": "",
            "pkg/other/thing.py": "",
            "pkg/lazy/__init__.py": "def __getattr__(name):\n    import importlib\n    return importlib.import_module('.impl', __name__)\n",
            "pkg/lazy/impl.py": "VALUE = 1\n",
            "pkg/lazy/more.py": "",
            "scripts/uses_alpha.py": "from pkg.alpha import np\nprint(snakemake)\n",
            "scripts/uses_deep.py": "import json\nimport pkg.sub.deep.leaf\n",
            "scripts/uses_from_package.py": "from pkg.other import thing\nfrom pkg import sub\n",
            "scripts/uses_lazy.py": "def main():\n    from pkg.lazy import VALUE\n    return VALUE\n",
            "scripts/uses_nothing.py": "import os\nfrom . import nope\n",
            "scripts/helper.py": "",
            "scripts/uses_helper.py": "import helper\nimport pkg\n",
        },
    )
    return tmp_path


@pytest.mark.parametrize(
    "script, expected",
    [
        # absolute 'from' import; 'from pkg import beta' (submodule); relative; cycle back to alpha
        ("uses_alpha", ["pkg/__init__.py", "pkg/alpha.py", "pkg/beta.py", "pkg/gamma.py"]),
        # every __init__ on the way, imports of an __init__, relative import three levels up
        (
            "uses_deep",
            [
                "pkg/__init__.py",
                "pkg/alpha.py",
                "pkg/beta.py",
                "pkg/gamma.py",
                "pkg/sub/__init__.py",
                "pkg/sub/deep/__init__.py",
                "pkg/sub/deep/leaf.py",
                "pkg/sub/inner.py",
            ],
        ),
        # 'from package import submodule' of a subpackage and of a package's name
        (
            "uses_from_package",
            [
                "pkg/__init__.py",
                "pkg/other/__init__.py",
                "pkg/other/thing.py",
                "pkg/sub/__init__.py",
                "pkg/sub/inner.py",
            ],
        ),
        # a lazy package (module-level __getattr__): a name that is no submodule may load any
        ("uses_lazy", ["pkg/__init__.py", "pkg/lazy/__init__.py", "pkg/lazy/impl.py", "pkg/lazy/more.py"]),
        ("uses_nothing", []),
        # modules beside the scripts are not on the search path by default
        ("uses_helper", ["pkg/__init__.py"]),
    ],
)
def test_script_dependencies_on_a_synthetic_package(synthetic, script, expected):
    deps = script_dependencies(synthetic / "scripts" / f"{script}.py", synthetic)
    assert deps == sorted(deps)
    assert rel(deps, synthetic) == expected


def test_search_path_and_find_module(synthetic):
    deps = script_dependencies(
        synthetic / "scripts" / "uses_helper.py", synthetic, search=[synthetic, synthetic / "scripts"]
    )
    assert rel(deps, synthetic) == ["pkg/__init__.py", "scripts/helper.py"]
    assert find_module("pkg.sub", [synthetic]) == (synthetic / "pkg/sub/__init__.py", True)
    assert find_module("pkg.sub.inner", [synthetic]) == (synthetic / "pkg/sub/inner.py", False)
    assert find_module("pkg.sub.x", [synthetic]) is None
    assert find_module("numpy", [synthetic]) is None


def test_edits_are_seen_by_the_next_computation(synthetic):
    script = synthetic / "scripts" / "uses_helper.py"
    assert rel(script_dependencies(script, synthetic), synthetic) == ["pkg/__init__.py"]
    (synthetic / "pkg/__init__.py").write_text("from . import other  # now eager\n")
    assert rel(script_dependencies(script, synthetic), synthetic) == ["pkg/__init__.py", "pkg/other/__init__.py"]


def test_syntax_errors_name_the_file(synthetic):
    (synthetic / "pkg/beta.py").write_text("def broken(:\n")
    with pytest.raises(SyntaxError, match="beta.py"):
        script_dependencies(synthetic / "scripts" / "uses_alpha.py", synthetic)


# ------------------------------------------------------------------------------ real tree


def test_fit_script_depends_on_the_model_code():
    deps = rel(script_dependencies(ROOT / "scripts" / "fit.py", ROOT), ROOT)
    for module in ("nsbi/__init__.py", "nsbi/expr.py", "nsbi/fit.py", "nsbi/workspace.py", "nsbi/analysis.py"):
        assert module in deps
    assert not any(d.startswith("nsbi/train/") for d in deps)


def test_neyman_script_depends_on_the_fit_and_model_code():
    deps = rel(script_dependencies(ROOT / "scripts" / "neyman_chunk.py", ROOT), ROOT)
    for module in ("nsbi/neyman.py", "nsbi/toys.py", "nsbi/fit.py", "nsbi/expr.py", "nsbi/workspace.py"):
        assert module in deps
    # the model code, wherever it lives (nsbi/model.py or a package nsbi/model/)
    assert any(d == "nsbi/model.py" or d.startswith("nsbi/model/") for d in deps)


def test_prep_scripts_depend_on_config_and_io():
    for script in ("select.py", "prep.py"):
        deps = rel(script_dependencies(ROOT / "scripts" / script, ROOT), ROOT)
        assert {"nsbi/config.py", "nsbi/io.py", "nsbi/prep.py", "nsbi/expr.py"} <= set(deps), script


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_real_scripts_agree_with_modulefinder(script):
    """An independent static analysis (the standard library's bytecode-based
    ModuleFinder, which also follows imports inside functions) finds the same files."""
    finder = modulefinder.ModuleFinder(path=[str(ROOT)])
    finder.run_script(str(script))
    # after loading a package, ModuleFinder's __file__ is the package's __init__.py
    expected = sorted(m.__file__ for name, m in finder.modules.items() if name.split(".")[0] == "nsbi")
    assert script_dependencies(script, ROOT) == expected
