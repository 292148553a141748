"""Old import paths of the flat layout, kept for one release with a DeprecationWarning.

``import tlhelpers.engine`` still works and gives a module that forwards every attribute to
``tlhelpers.training.engine``, after warning once where the module lives now. The table below is
the whole list; the next release deletes this file.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

MOVED: dict[str, str] = {
    "tlhelpers.runtime": "tlhelpers.core.runtime",
    "tlhelpers.checkpoint": "tlhelpers.core.checkpoint",
    "tlhelpers.style": "tlhelpers.core.style",
    "tlhelpers.preprocessing": "tlhelpers.data.preprocessing",
    "tlhelpers.fewshot.omniglot": "tlhelpers.data.omniglot",
    "tlhelpers.backbones": "tlhelpers.models.backbones",
    "tlhelpers.smallcnn": "tlhelpers.models.smallcnn",
    "tlhelpers.mini_resnet": "tlhelpers.models.mini_resnet",
    "tlhelpers.mini_vgg": "tlhelpers.models.mini_vgg",
    "tlhelpers.fewshot.conv4": "tlhelpers.models.conv4",
    "tlhelpers.engine": "tlhelpers.training.engine",
    "tlhelpers.schedules": "tlhelpers.training.schedules",
    "tlhelpers.param_groups": "tlhelpers.training.param_groups",
    "tlhelpers.freezing": "tlhelpers.training.freezing",
    "tlhelpers.finetune": "tlhelpers.transfer.finetuning",
    "tlhelpers.features": "tlhelpers.transfer.features",
    "tlhelpers.probe": "tlhelpers.transfer.probe",
    "tlhelpers.retrieval": "tlhelpers.transfer.retrieval",
    "tlhelpers.projection": "tlhelpers.transfer.projection",
    "tlhelpers.domain.pairs": "tlhelpers.course.domain_pairs",
    "tlhelpers.domain.experiment": "tlhelpers.course.domain_experiment",
    "tlhelpers.data.shapes": "tlhelpers.course.shapes",
    "tlhelpers.data.glyphs": "tlhelpers.course.glyphs",
    "tlhelpers.data.digits": "tlhelpers.course.digits",
    "tlhelpers.data.uci_digits": "tlhelpers.course.uci_digits",
    "tlhelpers.finetune_data": "tlhelpers.course.finetune_data",
    "tlhelpers.proxy_pretraining": "tlhelpers.course.proxy_pretraining",
    "tlhelpers.strategy": "tlhelpers.course.recommend",
    "tlhelpers.strategy_map": "tlhelpers.course.strategy_map",
    "tlhelpers.results": "tlhelpers.course.results",
    "tlhelpers.inspection": "tlhelpers.course.inspection",
}


class _Forward(types.ModuleType):
    """A module object whose attributes are those of the module that replaced it."""

    def __init__(self, name: str, target: str) -> None:
        super().__init__(name, f"Moved to {target}; import it from there.")
        self.__target = target

    def _module(self) -> types.ModuleType:
        return importlib.import_module(self.__target)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._module(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._module())


class _OldPathLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.target} (the layered layout); import from {self.target} "
            "(the old path goes in the next release).",
            DeprecationWarning,
            stacklevel=2,
        )
        importlib.import_module(self.target)  # fail here, with the real error, if it cannot import
        return _Forward(spec.name, self.target)

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class OldPathFinder(importlib.abc.MetaPathFinder):
    """Finds the old dotted paths of :data:`MOVED` (only those); last on ``sys.meta_path``."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _OldPathLoader(new))


def install() -> None:
    """Put :class:`OldPathFinder` on ``sys.meta_path`` once (called by ``tlhelpers/__init__.py``)."""
    if not any(isinstance(f, OldPathFinder) for f in sys.meta_path):
        sys.meta_path.append(OldPathFinder())
