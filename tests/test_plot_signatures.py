"""Every plotting function of the package says it returns a matplotlib Figure (and is typed so)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import tlhelpers

PLOTTING = ("plot", "show_", "scatter_2d", "prediction_grid", "decision_chart")
SUFFIXES = ("_diagram",)


def _plotting_functions():
    for info in pkgutil.walk_packages(tlhelpers.__path__, "tlhelpers."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__:
                yield from ((f"{info.name}.{name}.{m}", f) for m, f in vars(obj).items()
                            if inspect.isfunction(f) and m.startswith(PLOTTING))
            elif (inspect.isfunction(obj) and obj.__module__ == module.__name__
                  and (name.startswith(PLOTTING) or name.endswith(SUFFIXES))):
                yield f"{info.name}.{name}", obj


def test_every_plotting_function_is_annotated_to_return_a_figure():
    found = dict(_plotting_functions())
    assert len(found) >= 15, sorted(found)  # the walk finds them (History.plot, plot_episode, ...)
    wrong = {name: inspect.signature(f).return_annotation for name, f in found.items()
             if inspect.signature(f).return_annotation not in ("Figure", "matplotlib.figure.Figure")}
    assert not wrong, wrong
