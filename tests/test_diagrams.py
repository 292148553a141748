"""The course diagrams render, and show what the code computes: stages, tap sizes, GRL sign, prototypes, MAML."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from tlhelpers.course.diagrams import (  # noqa: E402
    RANDOM_HATCH,
    STAGE_COLOURS,
    dann_diagram,
    grl_factor,
    maml_diagram,
    maml_toy_path,
    prototype_diagram,
    prototype_toy,
    strategy_stages_diagram,
    vgg_taps_diagram,
)
from tlhelpers.models.backbones import build_classifier  # noqa: E402
from tlhelpers.training.freezing import stage_names, unfreeze, unfreeze_last  # noqa: E402
from tlhelpers.transfer.features import LayerNotFoundError  # noqa: E402
from tlhelpers.transfer.finetuning import STRATEGIES, Strategy  # noqa: E402


def _rendered_texts(fig) -> list[str]:
    fig.savefig(io.BytesIO(), format="png", dpi=40)  # renders with Agg: raises if anything cannot be drawn
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [ax.get_title() for ax in fig.axes]


def _patches(fig) -> dict[str, Any]:
    return {p.get_gid(): p for ax in fig.axes for p in ax.patches if p.get_gid()}


def _freezing_answer(strategy: Strategy, model: torch.nn.Module) -> tuple[list[str], set[str], dict[str, int]]:
    """Stages, trainable stages and stage sizes, straight from freezing.py."""
    unfreeze(model)
    if strategy.last_stages is not None:
        unfreeze_last(model, strategy.last_stages)
    names = stage_names(model)
    trained = {n for n in names if any(p.requires_grad for p in model.get_submodule(n).parameters())}
    sizes = {n: sum(p.numel() for p in model.get_submodule(n).parameters()) for n in names}
    return names, trained, sizes


@pytest.mark.parametrize(("strategies", "arch"), [(None, "resnet50"), ((Strategy("x", "last three", 3),), "mini_resnet")])
def test_strategy_rows_shade_exactly_the_stages_freezing_trains(strategies, arch):
    fig = strategy_stages_diagram(strategies, arch=arch, num_classes=37)
    texts, patches = _rendered_texts(fig), _patches(fig)
    with torch.device("meta"):
        model = build_classifier(arch, 37, None).model
    for strategy in strategies or STRATEGIES:
        assert any(t.startswith(f"({strategy.key}) {strategy.name}\n") for t in texts), strategy
        names, trained, sizes = _freezing_answer(strategy, model)
        assert [g.split(":", 1)[1] for g in patches if g.startswith(f"{strategy.key}:")] == names
        for name in names:
            patch = patches[f"{strategy.key}:{name}"]
            expected = STAGE_COLOURS["trained" if name in trained else "frozen"]
            assert patch.get_facecolor() == to_rgba(expected), (strategy.key, name)
            random = not strategy.pretrained or name == names[-1]  # scratch: everything; else only the new head
            assert (patch.get_hatch() == RANDOM_HATCH) == random, (strategy.key, name)
    if arch == "resnet50":  # parameter counts, e.g. ResNet-50's layer4 (14,964,736) and a 37-class fc (75,813)
        assert "layer4\n15.0M" in texts and "fc\n75.8k" in texts
        assert sizes["layer4"] == 14_964_736


def test_vgg_tap_sizes_match_a_real_forward_pass_of_mini_vgg():
    model = build_classifier("mini_vgg", 10, None).model.eval()
    # mini_vgg keeps vgg16's indices: conv4_3 is features.22, conv5_3 features.29, fc7 classifier.4
    seen: dict[str, tuple[int, ...]] = {}

    def record(name):
        def hook(module, inputs, out):
            seen[name] = tuple(out.shape[1:])  # returns None: the output is left alone
        return hook

    for name, node in {"conv4_3": "features.22", "conv5_3": "features.29", "fc7": "classifier.4"}.items():
        model.get_submodule(node).register_forward_hook(record(name))
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    texts = _rendered_texts(vgg_taps_diagram("mini_vgg", ("conv4_3", "conv5_3", "fc7"), image_size=32))
    for layer, shape in seen.items():
        assert f"{layer}\n{'×'.join(map(str, shape))}" in texts, (layer, shape, texts)
    assert seen["conv4_3"] == (128, 4, 4) and seen["fc7"] == (256,)  # the reference itself is what we think
    boxes = [t.split("\n")[0] for t in texts if t][:10]  # boxes come first, left to right, then the taps
    assert boxes == ["input"] + [f"block {b}" for b in range(1, 6)] + ["avgpool", "fc6", "fc7", "fc8"]
    assert "input\n3×32×32" in texts


def test_vgg16_taps_have_the_paper_sizes_without_building_weights():
    texts = _rendered_texts(vgg_taps_diagram("vgg16", ("conv4_3", "conv5_3", "fc7", "features.4"), 224))
    for label in ("conv4_3\n512×28×28", "conv5_3\n512×14×14", "fc7\n4096", "features.4\n64×112×112",
                  "block 3\n3 conv + pool\n256×28×28", "avgpool\n512×7×7", "fc8\n1000"):
        assert label in texts, label


def test_vgg_taps_reject_other_models_and_unknown_layers():
    with pytest.raises(ValueError, match="no VGG layout"):
        vgg_taps_diagram("resnet18")
    with pytest.raises(LayerNotFoundError, match="conv9_9"):
        vgg_taps_diagram("mini_vgg", ("conv9_9",), image_size=32)


@pytest.mark.parametrize("lambda_", [1.0, 0.5])
def test_dann_diagram_shows_the_grl_and_its_measured_reversed_sign(lambda_):
    texts = _rendered_texts(dann_diagram(lambda_))
    assert "GRL" in texts
    reversed_label = [t for t in texts if t.startswith("−λ")]
    assert reversed_label == [f"−λ·∂L_d/∂f\n(×{-lambda_:g})"]
    assert any(t.startswith("+∂L_y") for t in texts) and any(t.startswith("+∂L_d") for t in texts)
    assert grl_factor(lambda_) == -lambda_


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prototypes_are_class_means_and_the_query_goes_to_the_nearest(seed):
    toy = prototype_toy(seed, n_way=4, k_shot=3)
    support, labels, query = toy["support"], toy["support_y"], toy["query"]
    means = torch.stack([support[labels == c].mean(0) for c in range(4)])
    torch.testing.assert_close(toy["prototypes"], means)
    sq = torch.tensor([sum((q - m) ** 2 for q, m in zip(query.tolist(), mean)) for mean in means.tolist()])
    torch.testing.assert_close(toy["sq_dist"], sq)
    assert int(toy["pred"]) == int(sq.argmin())
    texts = _rendered_texts(prototype_diagram(seed, n_way=4, k_shot=3))
    assert any(t.endswith(f"query → class {int(sq.argmin())}") for t in texts)
    assert sorted(t for t in texts if t.startswith("d² = ")) == sorted(f"d² = {d:.1f}" for d in sq.tolist())
    with pytest.raises(ValueError, match="n_way >= 2"):
        prototype_toy(n_way=1)


def _hand_maml(theta, centres, curvatures, alpha, steps):
    """The meta-gradient of the mean post-adaptation loss of quadratic tasks, derived by hand.

    ``θ_{k+1} = θ_k - α A (θ_k - c)``, so ``dθ_K/dθ = (I - αA)^K`` and ``∇ = (I - αA)^K A (θ_K - c)``.
    """
    grads, losses = [], []
    for c, a in zip(centres, curvatures):
        p = theta.copy()
        for _ in range(steps):
            p = p - alpha * a @ (p - c)
        m = np.linalg.matrix_power(np.eye(2) - alpha * a, steps)
        grads.append(m @ a @ (p - c))
        losses.append(0.5 * (p - c) @ a @ (p - c))
    return np.mean(grads, 0), float(np.mean(losses))


@pytest.mark.parametrize(("seed", "steps"), [(0, 1), (3, 1), (1, 2)])
def test_maml_meta_gradient_is_second_order_and_the_step_lowers_the_adapted_loss(seed, steps):
    alpha, beta = 0.4, 1.5
    toy = maml_toy_path(seed, n_tasks=3, alpha=alpha, beta=beta, inner_steps=steps)
    theta, c, a = (toy[k].numpy() for k in ("theta", "centres", "curvatures"))
    grad, loss = _hand_maml(theta, c, a, alpha, steps)
    np.testing.assert_allclose(toy["meta_grad"].numpy(), grad, rtol=1e-10)
    np.testing.assert_allclose(float(toy["meta_loss"]), loss, rtol=1e-10)
    np.testing.assert_allclose(toy["theta_new"].numpy(), theta - beta * grad, rtol=1e-10)
    np.testing.assert_allclose(float(toy["meta_loss_after"]), _hand_maml(theta - beta * grad, c, a, alpha, steps)[1])
    assert float(toy["meta_loss_after"]) < float(toy["meta_loss"])
    if steps == 1:  # first order would drop the (I - αA) factor: a different, wrong gradient
        first_order = np.mean([ai @ (p - ci) for ai, ci, p in zip(a, c, toy["adapted"][:, -1].numpy())], 0)
        assert not np.allclose(first_order, grad)
        np.testing.assert_allclose(toy["adapted"][:, 1].numpy(), theta - alpha * np.einsum("tij,tj->ti", a, theta - c))


def test_maml_diagram_draws_each_task_and_the_meta_step():
    toy = maml_toy_path()
    texts = _rendered_texts(maml_diagram())
    assert [t for t in texts if t.startswith(" θ'_")] == [" θ'_1", " θ'_2", " θ'_3"]
    assert "meta step" in texts
    assert any(t.endswith(f"{float(toy['meta_loss']):.2f} → {float(toy['meta_loss_after']):.2f}") for t in texts)
