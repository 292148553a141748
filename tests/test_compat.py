"""The flat layout's module paths keep working for one release, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import warnings

import pytest

from tlhelpers._compat import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_warns_and_gives_the_new_modules_objects(old):
    new = importlib.import_module(MOVED[old])
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        legacy = importlib.import_module(old)
    assert any(issubclass(w.category, DeprecationWarning) and MOVED[old] in str(w.message) for w in caught)
    public = [n for n in vars(new) if not n.startswith("_") and getattr(getattr(new, n), "__module__", None) == new.__name__]
    assert public, f"{MOVED[old]} defines no public name"
    for name in public:
        assert getattr(legacy, name) is getattr(new, name)


def test_from_import_of_an_old_path_works_in_a_fresh_process():
    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            "try:\n    from tlhelpers.engine import fit\nexcept DeprecationWarning as w:\n    print(w)\n"
            "warnings.simplefilter('ignore')\nfrom tlhelpers.engine import fit\n"
            "from tlhelpers.training.engine import fit as new\nassert fit is new\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "tlhelpers.engine moved to tlhelpers.training.engine" in out.stdout


def test_every_new_path_exists_and_no_old_file_is_left():
    from pathlib import Path

    root = Path(importlib.import_module("tlhelpers").__file__).parent
    for old, new in MOVED.items():
        assert importlib.util.find_spec(new) is not None, new
        assert not (root.parent / (old.replace(".", "/") + ".py")).exists(), f"{old} exists twice"


def test_unknown_module_still_fails():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("tlhelpers.no_such_module")
