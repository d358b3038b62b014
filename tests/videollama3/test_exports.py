"""videollama3.exports.lazy_exports: public names imported from their submodules when first used."""

import sys

import pytest


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A throwaway package ``lazypkg`` whose ``__init__`` uses lazy_exports, with a submodule ``a`` that
    defines ``VALUE`` and a submodule ``broken`` that imports a module that does not exist."""
    root = tmp_path / "lazypkg"
    root.mkdir()
    (root / "__init__.py").write_text(
        "from videollama3.exports import lazy_exports\n"
        "_EXPORTS = {'VALUE': 'a', 'MISSING': 'broken'}\n"
        "__all__ = list(_EXPORTS)\n"
        "__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)\n")
    (root / "a.py").write_text("VALUE = 42\n")
    (root / "b.py").write_text("OTHER = 7\n")
    (root / "broken.py").write_text("import no_such_module_anywhere\nMISSING = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [m for m in sys.modules if m == "lazypkg" or m.startswith("lazypkg.")]:
        del sys.modules[name]


def test_a_public_name_is_imported_from_its_submodule_when_first_used(package):
    import lazypkg

    assert "lazypkg.a" not in sys.modules and "VALUE" in dir(lazypkg)
    assert lazypkg.VALUE == 42 and "lazypkg.a" in sys.modules
    assert vars(lazypkg)["VALUE"] == 42  # kept: looked up once
    from lazypkg import VALUE

    assert VALUE == 42
    assert lazypkg.b.OTHER == 7  # a submodule by attribute, as an eager __init__ gave it


def test_an_unknown_name_is_an_attribute_error_and_a_missing_dependency_stays_itself(package):
    import lazypkg

    with pytest.raises(AttributeError, match="module 'lazypkg' has no attribute 'nothing'"):
        lazypkg.nothing  # noqa: B018
    with pytest.raises(ModuleNotFoundError, match="no_such_module_anywhere"):
        lazypkg.MISSING  # noqa: B018
