"""Every kind of figure the package draws renders with matplotlib's default fonts: no missing glyph, no CJK text.

A machine without CJK fonts (Colab, by default) draws a missing glyph as an empty box, and matplotlib warns
(``Glyph 36801 (...) missing from font(s) DejaVu Sans.``) or, in some versions, logs it. The course keeps figure
text in English, so the Chinese notebooks show the same figures. Each test builds one figure of a kind on tiny
data with the default rcParams, draws it and checks that no such warning was emitted and no text is CJK.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from test_plot_signatures import _plotting_functions  # noqa: E402  (tests/ is on sys.path, as for conftest)

import tlhelpers  # noqa: E402

#: What matplotlib says when a font lacks a glyph (warning or log record), or a requested font is absent.
GLYPH_PROBLEM = re.compile(r"missing from|Glyph|findfont: Font family .* not found")
#: CJK ideographs, kana, hangul, CJK/full-width punctuation (U+2E80-U+9FFF, U+AC00-U+D7AF, U+F900-U+FAFF,
#: U+FE30-U+FE4F, U+FF00-U+FFEF) and the supplementary ideographs.
CJK = re.compile("[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003ffff]")
#: Figure functions the signature test's name patterns do not catch.
EXTRA_NAMES = re.compile(r"_diagram$|_chart$")


# ---------------------------------------------------------------- tiny inputs, one builder per figure kind

def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _uint8_images(n: int, size: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=_gen())


def _image_dataset(n: int = 6) -> Any:
    from tlhelpers.data.tensor_dataset import ImageTensorDataset

    return ImageTensorDataset(_uint8_images(n), torch.arange(n) % 3, ["cat", "dog", "fox"], None)


def _history(n: int = 4, offset: float = 0.0) -> Any:
    from tlhelpers.training.engine import History

    return History([{"epoch": e, "train_loss": 1 / e + offset, "val_loss": 1.2 / e + offset, "train_acc": 0.5 + 0.04 * e,
                     "val_acc": 0.45 + 0.03 * e, "domain_acc": 0.5 + 0.04 * e, "lambda": e / 10, "lr": 1e-3}
                    for e in range(1, n + 1)])


def _diagram(name: str, **kwargs: Any) -> Callable[[], Figure]:
    def build() -> Figure:
        from tlhelpers.course import diagrams

        return getattr(diagrams, name)(**kwargs)
    return build


def _top_losses() -> Figure:
    from torch.utils.data import TensorDataset

    from tlhelpers.course.diagnostics import TopLosses, plot_top_losses

    data = TensorDataset(torch.randn(4, 3, 6, 6, generator=_gen()), torch.tensor([0, 1, 2, 0]))
    top = TopLosses(torch.tensor([2, 0]), torch.tensor([2.5, 1.0]), torch.tensor([0, 1]), torch.tensor([2, 0]),
                    torch.tensor([0.7, 0.4]))
    return plot_top_losses(top, data, ["cat", "dog", "fox"], mean=(0.5,) * 3, std=(0.25,) * 3)


def _confusion_matrix() -> Figure:
    from tlhelpers.course.diagnostics import confusion, plot_confusion_matrix

    return plot_confusion_matrix(confusion(np.array([0, 1, 1, 2]), np.array([0, 0, 1, 2]), 3), ["cat", "dog", "fox"])


def _prediction_grid() -> Figure:
    from tlhelpers.course.inspection import prediction_grid

    return prediction_grid(_uint8_images(4), [0, 1, 2, 0], [0, 2, 2, 1], ["cat", "dog", "fox"], ncols=2)  # ✓ and ✗


def _strategy_map() -> Figure:
    from tlhelpers.course.strategy_map import METHODS, best_methods, map_summary, plot_strategy_map

    records = [{"target": t, "method": m, "k": k, "seed": s, "test_acc": 0.2 + 0.1 * i + 0.01 * s}
               for t in ("near", "far") for i, m in enumerate(METHODS) for k in (1, 5) for s in range(2)]
    summary = map_summary(records)
    return plot_strategy_map(summary, best_methods(summary))


def _decision_chart() -> Figure:
    from tlhelpers.course.recommend import decision_chart

    fig = decision_chart()
    assert isinstance(fig, Figure)
    return fig


def _show_batch() -> Figure:
    from tlhelpers.data.preview import show_batch

    return show_batch(_image_dataset(), n=3, title="a batch")


def _show_augmentations() -> Figure:
    from tlhelpers.data.preview import show_augmentations

    return show_augmentations(_image_dataset(), 0, lambda x: x, n=2)


def _few_label_curve() -> Figure:
    from tlhelpers.domain.few_labels import FewLabelResult, plot_few_label_curve

    curves = {name: [FewLabelResult(0, [a]), FewLabelResult(1, [a + 0.1, a + 0.2]), FewLabelResult(5, [a + 0.3, a + 0.35])]
              for name, a in (("source_only", 0.3), ("dann", 0.4))}
    return plot_few_label_curve(curves, chance=0.1)


def _domain_embedding() -> Figure:
    from tlhelpers.domain.visual import plot_domain_embedding

    points = np.random.default_rng(0).normal(size=(12, 2))
    return plot_domain_embedding(points, np.repeat([0, 1], 6), np.tile(np.arange(3), 4), title="DANN",
                                 class_names=["a", "b", "c"], note="agreement 0.5")


def _sample_grid() -> Figure:
    from tlhelpers.domain.visual import plot_sample_grid

    ds = [(torch.rand(3, 8, 8, generator=_gen(i)), i) for i in range(3)]
    return plot_sample_grid(ds, ds, n=3)


def _training_signals() -> Figure:
    from tlhelpers.domain.visual import plot_training_signals

    return plot_training_signals({"DANN": _history(), "DANN without reversal": _history(offset=0.1)})


def _episode() -> Figure:
    from tlhelpers.fewshot.plots import plot_episode
    from tlhelpers.fewshot.sampler import Episode

    g = _gen()
    episode = Episode(torch.rand(4, 1, 8, 8, generator=g), torch.arange(2).repeat_interleave(2),
                      torch.rand(2, 1, 8, 8, generator=g), torch.arange(2), torch.tensor([7, 2]))
    return plot_episode(episode, class_names=[f"c{i}" for i in range(8)])


def _eval_results() -> dict[str, Any]:
    from tlhelpers.fewshot.evaluation import EvalResult

    return {"ProtoNet": [EvalResult(0.8, 0.02, 20), EvalResult(0.9, 0.02, 20)],
            "pixels": [EvalResult(0.4, 0.03, 20), EvalResult(0.55, 0.03, 20)]}


def _accuracy_curves() -> Figure:
    from tlhelpers.fewshot.plots import plot_accuracy_curves

    return plot_accuracy_curves((1, 5), _eval_results(), xlabel="shots per class (K)", n_way=5)


def _method_comparison() -> Figure:
    from tlhelpers.fewshot.plots import plot_method_comparison

    table = {name: dict(zip((1, 5), results)) for name, results in _eval_results().items()}
    return plot_method_comparison(table, n_way=5, title="5-way accuracy")


def _meta_history() -> Figure:
    from tlhelpers.fewshot.plots import plot_meta_history
    from tlhelpers.training.engine import History

    maml = History([{"step": i, "train_loss": 1.5 - i / 200, "train_acc": 0.3 + i / 400, "val_acc": 0.3 + i / 500}
                    for i in (20, 40, 60)])
    return plot_meta_history({"MAML": maml, "Reptile": maml}, n_way=5)


def _prototype_projection() -> Figure:
    from tlhelpers.fewshot.plots import plot_prototype_projection

    g = _gen()
    y = torch.arange(3).repeat_interleave(2)
    return plot_prototype_projection(torch.randn(6, 4, generator=g), y, torch.randn(6, 4, generator=g), y,
                                     torch.randn(3, 4, generator=g))


def _history_plot() -> Figure:
    return _history().plot(label="(a) head only", chance=0.1)


def _lr_finder() -> Figure:
    from tlhelpers.training.lr_finder import LRFinderResult, plot_lr_finder

    lrs = [1e-4 * 3 ** i for i in range(8)]
    losses = [2.0, 1.9, 1.7, 1.4, 1.1, 1.0, 1.3, 3.0]
    return plot_lr_finder(LRFinderResult(lrs, losses, losses, 1e-2, True))


def _strategies_by_target() -> Figure:
    from tlhelpers.transfer.finetuning import STRATEGIES, StrategyResult, plot_strategies_by_target

    def run(strategy: Any, acc: float) -> StrategyResult:
        return StrategyResult(strategy, torch.nn.Identity(), _history(), 1, 1, 0.1, acc, True)

    return plot_strategies_by_target({"near": [run(s, 0.5) for s in STRATEGIES], "far": [run(STRATEGIES[0], 0.3)]},
                                     chance=0.1)


def _gradcam() -> Figure:
    from tlhelpers.transfer.gradcam import plot_gradcam

    images = torch.randn(2, 3, 8, 8, generator=_gen())
    maps = {"pretrained": torch.rand(2, 8, 8, generator=_gen(1)), "scratch": torch.rand(2, 8, 8, generator=_gen(2))}
    return plot_gradcam(images, maps, mean=(0.5,) * 3, std=(0.2,) * 3, titles=["cat", "dog"])


def _layer_probes() -> Figure:
    from tlhelpers.transfer.probe import plot_layer_probes

    layers = ["conv4_3", "fc7"]
    rows = [{"layer": layer, "target": target, "weights": weights, "test_acc": 0.1 * (i + 2)}
            for target in ("near", "far") for weights in ("pretrained", "random") for i, layer in enumerate(layers)]
    return plot_layer_probes(rows, layers, chance=0.1, title="linear probe per layer")


def _probe_curves() -> Figure:
    from tlhelpers.transfer.probe import plot_probe_curves

    return plot_probe_curves({"linear probe": _history(), "MLP head": _history(offset=0.1)}, chance=0.25,
                             eval_name="validation", log_loss=True)


def _scatter_2d() -> Figure:
    from tlhelpers.transfer.projection import scatter_2d

    points = np.random.default_rng(0).normal(size=(8, 2))
    return scatter_2d(points, np.arange(8) % 2, ["a", "b"], groups=np.arange(8) // 4, group_names=["source", "target"],
                      title="PCA of the features")


def _neighbors() -> Figure:
    from tlhelpers.transfer.retrieval import show_neighbors

    return show_neighbors(_uint8_images(4), 0, [1, 2], [0.9, 0.5], labels=torch.tensor([0, 1, 0, 1]),
                          class_names=["a", "b"])


#: One builder per figure kind, by the qualified name of the function that draws it.
KINDS: dict[str, Callable[[], Figure]] = {
    "tlhelpers.course.diagrams.strategy_stages_diagram": _diagram("strategy_stages_diagram", arch="resnet18",
                                                                  num_classes=3),
    "tlhelpers.course.diagrams.vgg_taps_diagram": _diagram("vgg_taps_diagram", image_size=32),
    "tlhelpers.course.diagrams.dann_diagram": _diagram("dann_diagram"),
    "tlhelpers.course.diagrams.prototype_diagram": _diagram("prototype_diagram"),
    "tlhelpers.course.diagrams.maml_diagram": _diagram("maml_diagram"),
    "tlhelpers.course.diagnostics.plot_top_losses": _top_losses,
    "tlhelpers.course.diagnostics.plot_confusion_matrix": _confusion_matrix,
    "tlhelpers.course.inspection.prediction_grid": _prediction_grid,
    "tlhelpers.course.strategy_map.plot_strategy_map": _strategy_map,
    "tlhelpers.course.recommend.decision_chart": _decision_chart,
    "tlhelpers.data.preview.show_batch": _show_batch,
    "tlhelpers.data.preview.show_augmentations": _show_augmentations,
    "tlhelpers.domain.few_labels.plot_few_label_curve": _few_label_curve,
    "tlhelpers.domain.visual.plot_domain_embedding": _domain_embedding,
    "tlhelpers.domain.visual.plot_sample_grid": _sample_grid,
    "tlhelpers.domain.visual.plot_training_signals": _training_signals,
    "tlhelpers.fewshot.plots.plot_episode": _episode,
    "tlhelpers.fewshot.plots.plot_accuracy_curves": _accuracy_curves,
    "tlhelpers.fewshot.plots.plot_method_comparison": _method_comparison,
    "tlhelpers.fewshot.plots.plot_meta_history": _meta_history,
    "tlhelpers.fewshot.plots.plot_prototype_projection": _prototype_projection,
    "tlhelpers.training.engine.History.plot": _history_plot,
    "tlhelpers.training.lr_finder.plot_lr_finder": _lr_finder,
    "tlhelpers.transfer.finetuning.plot_strategies_by_target": _strategies_by_target,
    "tlhelpers.transfer.gradcam.plot_gradcam": _gradcam,
    "tlhelpers.transfer.probe.plot_layer_probes": _layer_probes,
    "tlhelpers.transfer.probe.plot_probe_curves": _probe_curves,
    "tlhelpers.transfer.projection.scatter_2d": _scatter_2d,
    "tlhelpers.transfer.retrieval.show_neighbors": _neighbors,
}


# ---------------------------------------------------------------- helpers

def _extra_figure_functions() -> Iterator[str]:
    """Public functions named ``*_diagram`` / ``*_chart`` (figures the signature test's patterns miss)."""
    for info in pkgutil.walk_packages(tlhelpers.__path__, "tlhelpers."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isfunction(obj) and obj.__module__ == module.__name__ and EXTRA_NAMES.search(name) \
                    and not name.startswith("_"):
                yield f"{info.name}.{name}"


@pytest.fixture
def default_fonts() -> Iterator[None]:
    """matplotlib's default rcParams (DejaVu Sans, no CJK font) for the test; the previous ones afterwards."""
    with matplotlib.rc_context():
        matplotlib.rc_file_defaults()
        yield


def _build_and_draw(build: Callable[[], Figure], caplog: pytest.LogCaptureFixture) -> tuple[Figure, list[str]]:
    """Build a figure and draw it; every glyph warning or matplotlib log record meanwhile.

    The capture covers the build too (``finish`` lays the figure out, which renders the text once). A figure
    that ``finish`` closed before it was ever drawn is left with a bare ``FigureCanvasBase`` whose ``draw``
    renders nothing, so it gets an Agg canvas first, as a notebook's inline backend renders it.
    """
    caplog.set_level(logging.WARNING, logger="matplotlib")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = build()
        assert isinstance(fig, Figure), f"{build.__name__} returned {type(fig).__name__}, not a Figure"
        FigureCanvasAgg(fig)  # attaches itself as fig.canvas
        fig.canvas.draw()  # glyphs are looked up when the text is rendered
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records
                                                   if r.name.startswith("matplotlib")]
    return fig, messages


def _figure_texts(fig: Figure) -> list[str]:
    """The strings of the figure's text: figure texts, titles, axis labels, tick labels, legends, annotations."""
    texts: list[Text] = list(fig.texts)
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        texts += [*ax.get_xticklabels(which="both"), *ax.get_yticklabels(which="both")]
        legend = ax.get_legend()
        if legend is not None:
            texts += [*legend.get_texts(), legend.get_title()]
    texts += fig.findobj(Text)  # anything else: left/right titles, suptitle, figure legends, offset text, ...
    return [t.get_text() for t in texts]


# ---------------------------------------------------------------- tests

def test_every_figure_function_has_a_kind_here():
    discovered = set(dict(_plotting_functions())) | set(_extra_figure_functions())
    assert len(discovered) >= 25, sorted(discovered)  # the walks find them
    missing = sorted(discovered - set(KINDS))
    assert not missing, f"add a builder to KINDS in tests/test_figure_fonts.py for {missing}"
    gone = sorted(set(KINDS) - discovered)
    assert not gone, f"KINDS names functions that no longer exist (or are no longer found): {gone}"


@pytest.mark.parametrize("kind", list(KINDS))
def test_figure_draws_with_default_fonts_without_missing_glyphs(kind, default_fonts, caplog):
    fig, messages = _build_and_draw(KINDS[kind], caplog)
    assert matplotlib.rcParams["font.family"] == ["sans-serif"]  # the defaults really are in force
    problems = [m for m in messages if GLYPH_PROBLEM.search(m)]
    assert not problems, f"{kind}: glyphs the default font lacks (the text would show boxes): {problems}"
    assert any(_figure_texts(fig)), f"{kind} drew no text at all; the check would be empty"


@pytest.mark.parametrize("kind", list(KINDS))
def test_figure_text_stays_in_english(kind, default_fonts, caplog):
    fig, _ = _build_and_draw(KINDS[kind], caplog)
    cjk = [text for text in _figure_texts(fig) if CJK.search(text)]
    assert not cjk, f"{kind}: figure text with CJK characters (keep figure labels in English): {cjk}"


def test_the_capture_sees_a_missing_glyph(default_fonts, caplog):
    """The check can fail: a Chinese title drawn with the default font is reported, and is CJK."""
    import matplotlib.pyplot as plt

    from tlhelpers.core.style import finish

    def chinese() -> Figure:
        fig, ax = plt.subplots(figsize=(2, 1))
        ax.set_title("迁移学习")
        return finish(fig)

    fig, messages = _build_and_draw(chinese, caplog)
    assert any(GLYPH_PROBLEM.search(m) for m in messages), messages
    assert any(CJK.search(t) for t in _figure_texts(fig))

    def labelled_after_finish() -> Figure:  # only the draw renders this text: the draw itself is checked
        fig = finish(plt.subplots(figsize=(2, 1))[0])
        fig.axes[0].set_xlabel("域适应")
        return fig

    _, messages = _build_and_draw(labelled_after_finish, caplog)
    assert sum("missing from" in m for m in messages) >= 3, messages  # 域, 适, 应
