"""The package's top-level names: lazy (no torch on ``import tlhelpers``), complete and correct."""

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import tlhelpers

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_importing_the_package_imports_neither_torch_nor_any_submodule():
    result = _run(
        "import sys, tlhelpers\n"
        "assert 'torch' not in sys.modules, 'torch'\n"
        "subs = sorted(m for m in sys.modules if m.startswith('tlhelpers.') and m != 'tlhelpers._compat')\n"
        "assert not subs, subs\n"
        "assert 'fit' in dir(tlhelpers) and 'fit' in tlhelpers.__all__\n"
    )
    assert result.returncode == 0, result.stderr


def test_a_name_imports_only_its_own_module_on_first_use():
    # tlhelpers.course.recommend needs no torch: using its name must not pull in torch or any other module.
    result = _run(
        "import sys\n"
        "from tlhelpers import recommend\n"
        "from tlhelpers.course.recommend import recommend as direct\n"
        "assert recommend is direct\n"
        "assert 'torch' not in sys.modules and 'tlhelpers.training.engine' not in sys.modules\n"
        "import tlhelpers\n"
        "assert 'recommend' in vars(tlhelpers)  # cached: later lookups skip __getattr__\n"
    )
    assert result.returncode == 0, result.stderr


def test_exports_are_one_dict_and_all_lists_exactly_its_names():
    assert sorted(tlhelpers.__all__) == sorted(tlhelpers._EXPORTS)
    assert len(set(tlhelpers.__all__)) == len(tlhelpers.__all__)
    for name in ("fit", "build_classifier", "extract_features", "DANN", "EpisodeSampler", "meta_train",
                 "atomic_save", "safe_load", "run_checkpoint", "get_device", "History", "prototypes"):
        assert name in tlhelpers._EXPORTS, name


def test_every_exported_name_is_the_object_of_its_mapped_module():
    # Import every module first: a name that equals a submodule (``param_groups``) would be
    # rebound to the module by the import system and fail here.
    modules = {path: importlib.import_module(path) for path in set(tlhelpers._EXPORTS.values())}
    for name, path in tlhelpers._EXPORTS.items():
        assert hasattr(modules[path], name), f"{path} has no {name}"
        assert getattr(tlhelpers, name) is getattr(modules[path], name), name
        obj = getattr(modules[path], name)
        if hasattr(obj, "__module__") and callable(obj):
            assert obj.__module__ == path, f"{name} is defined in {obj.__module__}, not {path}; map it there"


def test_no_exported_name_shadows_a_submodule():
    submodules = {info.name for info in pkgutil.iter_modules(tlhelpers.__path__)}
    assert not submodules & set(tlhelpers._EXPORTS), sorted(submodules & set(tlhelpers._EXPORTS))


def test_module_paths_appear_only_in_the_exports_dict():
    source = (ROOT / "tlhelpers" / "__init__.py").read_text()
    for path in set(tlhelpers._EXPORTS.values()):
        assert source.count(f'"{path}"') == sum(p == path for p in tlhelpers._EXPORTS.values()), path


def test_unknown_name_raises_the_usual_attribute_error():
    with pytest.raises(AttributeError, match="module 'tlhelpers' has no attribute 'no_such_helper'"):
        tlhelpers.no_such_helper  # noqa: B018
    with pytest.raises(ImportError, match="no_such_helper"):
        exec("from tlhelpers import no_such_helper", {})
    assert not hasattr(tlhelpers, "_private_thing")


def test_the_package_is_marked_typed():
    assert (ROOT / "tlhelpers" / "py.typed").is_file()
