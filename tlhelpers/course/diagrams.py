"""The course's diagrams, drawn from the code they explain: nothing in them is placed or counted by hand.

- :func:`strategy_stages_diagram`: the stages each fine-tuning strategy trains, as ``prepare_model`` sets them;
- :func:`vgg_taps_diagram`: VGG's blocks and the feature size at each tap, from a shape pass;
- :func:`dann_diagram`: DANN's forward pass and gradient signs, the GRL's factor measured on the real GRL;
- :func:`prototype_diagram`: a query classified by its nearest prototype among toy 2-D embeddings;
- :func:`maml_diagram`: one MAML step on quadratic toy tasks (:func:`maml_toy_path` returns its numbers).

Models are built on the ``meta`` device: shapes and parameter counts without weights or compute.

Example:
    >>> fig = strategy_stages_diagram()                     # ResNet-50, strategies (a) to (d)
    >>> fig = vgg_taps_diagram("mini_vgg", image_size=32)   # the reduced notebook's backbone
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from tlhelpers.core.style import LABEL_SIZE, finish

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from tlhelpers.transfer.finetuning import Strategy

#: Box colours of stages that train and stages that stay frozen; random init is hatched.
STAGE_COLOURS: dict[str, str] = {"trained": "#56B4E9", "frozen": "#DDDDDD"}
RANDOM_HATCH = "///"
_FORWARD, _BACKWARD = "#333333", "#D55E00"


def _box(ax: Axes, xy: tuple[float, float], text: str, *, w: float = 1.0, h: float = 0.8, colour: str = "white",
         hatch: str | None = None, gid: str | None = None, size: float = 8) -> None:
    """A rectangle centred at ``xy`` with ``text`` in it."""
    from matplotlib.patches import Rectangle

    x, y = xy
    ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, facecolor=colour, edgecolor="#444444", hatch=hatch, gid=gid))
    ax.text(x, y, text, ha="center", va="center", fontsize=size)


def _arrow(ax: Axes, start: Sequence[float], end: Sequence[float], colour: Any = _FORWARD, style: str = "-",
           label: str = "", offset: tuple[float, float] = (0.0, 0.12), width: float = 1.0) -> None:
    """An arrow from ``start`` to ``end``, with ``label`` near its middle."""
    props = {"arrowstyle": "-|>", "color": colour, "linestyle": style, "linewidth": width}
    ax.annotate("", xy=(end[0], end[1]), xytext=(start[0], start[1]), arrowprops=props)
    ax.update_datalim([start, end])  # annotations do not count for autoscaling
    if label:
        mid = ((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1])
        ax.text(mid[0], mid[1], label, ha="center", va="center", fontsize=8, color=colour)


def _count(n: int) -> str:
    """``25557032`` -> ``"25.6M"``, ``75813`` -> ``"75.8k"``."""
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _shape(t: Tensor) -> str:
    """``(1, 512, 28, 28)`` -> ``"512×28×28"`` (the batch dimension dropped)."""
    return "×".join(str(s) for s in t.shape[1:])


def _bare(ax: Axes, title: str) -> None:
    """Equal axes without frame or ticks, fitted to what is drawn, with a title."""
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=LABEL_SIZE)
    ax.axis("off")
    ax.autoscale_view()


def strategy_stages_diagram(strategies: Sequence[Strategy] | None = None, arch: str = "resnet50",
                            num_classes: int = 37) -> Figure:
    """One row of stage boxes per strategy: trained or frozen, pretrained or random init, with parameter counts.

    Each row is the model :func:`~tlhelpers.transfer.finetuning.prepare_model` builds for the strategy (on the
    ``meta`` device); its :func:`~tlhelpers.training.freezing.trainable_stages` colour the boxes. The head is
    random init in every strategy: it is replaced for the target's ``num_classes``.

    Args:
        strategies: the strategies to draw; None for chapter 1's four (``STRATEGIES``).
        arch: an architecture name of :func:`~tlhelpers.models.backbones.build_classifier`.
        num_classes: classes of the target task (the head's size).

    Returns:
        The Figure; each box's patch has the ``gid`` ``"<strategy key>:<stage>"``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from tlhelpers.models.api import head_name
    from tlhelpers.training.freezing import count_parameters, stage_names, trainable_stages
    from tlhelpers.transfer.finetuning import STRATEGIES, prepare_model

    strategies = STRATEGIES if strategies is None else strategies
    fig, ax = plt.subplots(figsize=(9.5, 0.9 * len(strategies) + 1.2))
    for row, strategy in enumerate(strategies):
        with torch.device("meta"):
            model = prepare_model(strategy, arch, num_classes, weights=None).model
        trained, head = trainable_stages(model), head_name(model)
        total = count_parameters(model, trainable_only=False)
        ax.text(-0.8, -row, f"({strategy.key}) {strategy.name}\ntrains {_count(count_parameters(model))} of "
                f"{_count(total)}", ha="right", va="center", fontsize=9)
        for i, stage in enumerate(stage_names(model)):
            size = sum(p.numel() for p in model.get_submodule(stage).parameters())
            random = not strategy.pretrained or head == stage or head.startswith(f"{stage}.")
            _box(ax, (1.15 * i, -row), f"{stage}\n{_count(size)}", gid=f"{strategy.key}:{stage}",
                 colour=STAGE_COLOURS["trained" if stage in trained else "frozen"], hatch=RANDOM_HATCH if random else None)
    legend = {"frozen (pretrained)": ("frozen", None), "trained from pretrained": ("trained", None),
              "trained from random init": ("trained", RANDOM_HATCH)}
    handles = [Patch(facecolor=STAGE_COLOURS[c], edgecolor="#444444", hatch=h, label=k) for k, (c, h) in legend.items()]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False, fontsize=8)
    _bare(ax, f"Which stages of {arch} each strategy trains (box: stage, parameters)")
    return finish(fig)


def vgg_taps_diagram(arch: str = "vgg16", layers: Sequence[str] = ("conv4_3", "conv5_3", "fc7"),
                     image_size: int = 224) -> Figure:
    """VGG's blocks left to right with their output sizes, and the feature size at each tap.

    Sizes come from a shape pass on the ``meta`` device; layer names are resolved as
    :func:`~tlhelpers.transfer.features.extract_features` resolves them.

    Args:
        arch: a VGG-layout architecture (``vgg11`` ... ``vgg19_bn``, ``mini_vgg``).
        layers: the taps: aliases (``"conv4_3"``, ``"fc7"``) or graph node names (``"features.22"``).
        image_size: side of the square input image.

    Returns:
        The Figure.

    Raises:
        ValueError: if ``arch`` has no VGG layout, or a tap lies between two blocks (``flatten``).
    """
    import matplotlib.pyplot as plt
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    from tlhelpers.models.backbones import build_classifier
    from tlhelpers.transfer.features import resolve_layer, vgg_aliases

    with torch.device("meta"):
        model = build_classifier(arch, 1000, None).model.eval()
    aliases = vgg_aliases(model)
    if not aliases:
        raise ValueError(f"{arch!r} has no VGG layout (convs and pools, then three Linears); use vgg16 or mini_vgg.")
    nodes = [n for n in get_graph_node_names(model)[1] if n not in ("x", "flatten")]
    # boxes start at the first node, after each max-pool (the last one opens avgpool) and at each Linear
    pools = [node for name, node in aliases.items() if name.startswith("pool")]
    starts = {nodes[0]: "block 1"} | {nodes[nodes.index(p) + 1]: f"block {b + 2}" for b, p in enumerate(pools[:-1])}
    starts[nodes[nodes.index(pools[-1]) + 1]] = "avgpool"
    classifier: nn.Sequential = model.get_submodule("classifier")  # type: ignore[assignment]  # VGG layout checked
    linears = [f"classifier.{i}" for i, m in enumerate(classifier) if isinstance(m, nn.Linear)]
    starts.update({node: f"fc{6 + k}" for k, node in enumerate(linears)})
    boxes: dict[str, list[str]] = {}
    label = starts[nodes[0]]
    for node in nodes:
        label = starts.get(node, label)
        boxes.setdefault(label, []).append(node)
    taps = {layer: resolve_layer(model, layer, arch) for layer in layers}
    where = {node: label for label, members in boxes.items() for node in members}
    if any(node not in where for node in taps.values()):
        raise ValueError(f"taps {list(layers)} include one between blocks; tap a conv, pool or fc layer of {arch}.")
    wanted = sorted({members[-1] for members in boxes.values()} | set(taps.values()), key=nodes.index)
    with torch.device("meta"):
        out = create_feature_extractor(model, wanted)(torch.empty(1, 3, image_size, image_size))
    fig, ax = plt.subplots(figsize=(1.25 * len(boxes) + 2, 3.6))
    _box(ax, (0, 0), f"input\n3×{image_size}×{image_size}")
    x = {label: 1.3 * (i + 1) for i, label in enumerate(boxes)}
    for label, members in boxes.items():
        convs = sum(label.startswith("block") and isinstance(model.get_submodule(n), nn.Conv2d) for n in members)
        kind = f"\n{convs} conv + pool" if convs else ""
        _box(ax, (x[label], 0), f"{label}{kind}\n{_shape(out[members[-1]])}", h=1.0, colour="#EEEEEE", size=7)
        _arrow(ax, (x[label] - 0.8, 0), (x[label] - 0.5, 0))
    for k, (layer, node) in enumerate(taps.items()):
        members = boxes[where[node]]
        tip = x[where[node]] - 0.5 + (members.index(node) + 1) / len(members)  # where in the box the tap sits
        _arrow(ax, (tip, -0.5), (tip, -1.0 - 0.5 * (k % 2)), colour=_BACKWARD)
        ax.text(tip, -1.25 - 0.5 * (k % 2), f"{layer}\n{_shape(out[node])}", ha="center", va="center",
                fontsize=8, color=_BACKWARD, fontweight="bold")
    _bare(ax, f"{arch} at {image_size}×{image_size}: blocks (output size) and feature taps")
    return finish(fig)


def grl_factor(lambda_: float) -> float:
    """The factor :func:`tlhelpers.domain.grl.grad_reverse` applies to a gradient (``-lambda_``), measured."""
    from tlhelpers.domain.grl import grad_reverse

    x = torch.ones(1, requires_grad=True)
    grad_reverse(x, lambda_).sum().backward()
    return float(x.grad.item()) if x.grad is not None else math.nan


def dann_diagram(lambda_: float = 1.0) -> Figure:
    """DANN: the feature extractor feeds the label classifier, and through the GRL the domain discriminator.

    Forward arrows are solid; gradient arrows dashed, with their sign: the label loss's gradient reaches the
    features unchanged (+), the domain loss's gradient leaves the GRL multiplied by ``-lambda_``.

    Args:
        lambda_: the GRL's strength (its factor is measured on :func:`~tlhelpers.domain.grl.grad_reverse`).

    Returns:
        The Figure.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 3.8))
    boxes = {"image x": (0, 0), "feature\nextractor G_f": (2.2, 0), "label\nclassifier G_y": (5, 1.2),
             "label loss L_y": (8, 1.2), "GRL": (4.2, -1.2), "domain\ndiscriminator G_d": (6.4, -1.2),
             "domain loss L_d": (9, -1.2)}
    for text, xy in boxes.items():
        _box(ax, xy, text, w=0.9 if text == "GRL" else 1.5, colour="#FDE3C8" if text == "GRL" else "white")
    for start, end in (((0.75, 0), (1.45, 0)), ((2.95, 0.2), (4.25, 1.1)), ((5.75, 1.2), (7.25, 1.2)),
                       ((2.95, -0.2), (3.75, -1.1)), ((4.65, -1.2), (5.65, -1.2)), ((7.15, -1.2), (8.25, -1.2))):
        _arrow(ax, start, end)
    for start, end, label, offset in (
        ((7.25, 1.45), (5.75, 1.45), "+∂L_y", (0, 0.15)), ((4.25, 1.35), (2.8, 0.45), "+∂L_y/∂f", (-0.3, 0.2)),
        ((8.25, -1.45), (7.15, -1.45), "+∂L_d", (0, -0.18)), ((5.65, -1.45), (4.65, -1.45), "+∂L_d/∂f", (0, -0.18)),
        ((3.75, -1.45), (2.6, -0.45), f"−λ·∂L_d/∂f\n(×{grl_factor(lambda_):g})", (-0.55, -0.25)),
    ):
        _arrow(ax, start, end, colour=_BACKWARD, style="--", label=label, offset=offset)
    _bare(ax, f"DANN: solid = forward, dashed = gradients; the GRL multiplies by −λ (λ = {lambda_:g})")
    return finish(fig)


def prototype_toy(seed: int = 0, n_way: int = 3, k_shot: int = 5) -> dict[str, Tensor]:
    """Toy 2-D support points per class, their prototypes, one query and its squared distances.

    Args:
        seed: seeds the points.
        n_way: classes (at least 2).
        k_shot: support points per class (at least 1).

    Returns:
        ``support`` ``(n_way * k_shot, 2)``, ``support_y``, ``prototypes`` ``(n_way, 2)`` (by
        :func:`tlhelpers.fewshot.protonet.prototypes`), ``query`` ``(2,)``, ``sq_dist`` ``(n_way,)`` and
        ``pred``, the class of the nearest prototype.

    Raises:
        ValueError: if ``n_way < 2`` or ``k_shot < 1``.
    """
    from tlhelpers.fewshot.protonet import prototypes

    if n_way < 2 or k_shot < 1:
        raise ValueError(f"n_way={n_way}, k_shot={k_shot} is no episode; use n_way >= 2 and k_shot >= 1.")
    gen = torch.Generator().manual_seed(seed)
    angles = 2 * math.pi * torch.arange(n_way) / n_way
    centres = 3 * torch.stack([angles.cos(), angles.sin()], 1)
    support_y = torch.arange(n_way).repeat_interleave(k_shot)
    support = centres[support_y] + 0.9 * torch.randn(n_way * k_shot, 2, generator=gen)
    protos = prototypes(support, support_y, n_way)
    query = 0.55 * centres[0] + 0.45 * centres[1] + 0.6 * torch.randn(2, generator=gen)
    sq_dist = ((query - protos) ** 2).sum(1)
    return {"support": support, "support_y": support_y, "prototypes": protos, "query": query,
            "sq_dist": sq_dist, "pred": sq_dist.argmin()}


def prototype_diagram(seed: int = 0, n_way: int = 3, k_shot: int = 5) -> Figure:
    """Support points, their class prototypes (means), a query and its squared distance to each prototype.

    Args:
        seed: seeds the toy points (:func:`prototype_toy`).
        n_way: classes.
        k_shot: support points per class.

    Returns:
        The Figure; its title names the predicted class, that of the nearest prototype.
    """
    import matplotlib.pyplot as plt

    toy = prototype_toy(seed, n_way, k_shot)
    pred, query = int(toy["pred"]), toy["query"].tolist()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for c in range(n_way):
        colour = plt.get_cmap("tab10")(c % 10)
        points, proto = toy["support"][toy["support_y"] == c], toy["prototypes"][c].tolist()
        ax.scatter(points[:, 0], points[:, 1], color=colour, alpha=0.5, s=25, label=f"class {c} support")
        ax.scatter([proto[0]], [proto[1]], color=colour, marker="*", s=260, edgecolor="black", zorder=3)
        nearest = c == pred
        ax.plot([query[0], proto[0]], [query[1], proto[1]], "k-" if nearest else "k:", linewidth=2 if nearest else 1)
        ax.text((query[0] + proto[0]) / 2, (query[1] + proto[1]) / 2, f"d² = {toy['sq_dist'][c]:.1f}", fontsize=8,
                ha="center", backgroundcolor="white")
    ax.scatter([query[0]], [query[1]], color="black", marker="X", s=120, zorder=4, label="query")
    ax.set_title(f"{n_way}-way {k_shot}-shot: ★ = prototype (class mean); query → class {pred}", fontsize=LABEL_SIZE)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    ax.set(aspect="equal", xticks=[], yticks=[])
    return finish(fig)


def _task_losses(points: Tensor, centres: Tensor, curvatures: Tensor) -> Tensor:
    """``L_i(p) = ½ (p - c_i)ᵀ A_i (p - c_i)`` of each task ``i``: points ``(..., T, 2)`` -> ``(..., T)``."""
    d = points - centres
    return 0.5 * torch.einsum("...ti,tij,...tj->...t", d, curvatures, d)


def _adapt(theta: Tensor, centres: Tensor, curvatures: Tensor, alpha: float, steps: int) -> Tensor:
    """Each task's inner gradient steps from ``theta``, differentiable in ``theta``: paths ``(T, steps + 1, 2)``."""
    path = [theta.expand_as(centres)]
    for _ in range(steps):
        (grad,) = torch.autograd.grad(_task_losses(path[-1], centres, curvatures).sum(), path[-1], create_graph=True)
        path.append(path[-1] - alpha * grad)
    return torch.stack(path, 1)


def maml_toy_path(seed: int = 0, n_tasks: int = 3, alpha: float = 0.4, beta: float = 1.5, inner_steps: int = 1,
                  theta0: tuple[float, float] = (-3.0, -1.0)) -> dict[str, Tensor]:
    """One MAML step on quadratic toy tasks, second order through the inner steps (torch autograd).

    Task ``i``'s loss is ``½ (θ - c_i)ᵀ A_i (θ - c_i)``: centre ``c_i`` on a circle of radius 2, ``A_i``
    symmetric with random eigenvalues in ``[0.4, 2]``. Each task takes ``inner_steps`` steps of size
    ``alpha`` from ``θ``; the meta-loss is their mean post-adaptation loss; the outer step ``θ - beta · ∇``.

    Args:
        seed: seeds the tasks.
        n_tasks: number of tasks.
        alpha: inner learning rate.
        beta: outer (meta) learning rate.
        inner_steps: inner gradient steps per task.
        theta0: the initial parameters.

    Returns:
        float64 tensors: ``theta``, ``centres`` ``(T, 2)``, ``curvatures`` ``(T, 2, 2)``, ``adapted`` (each
        task's path, ``(T, inner_steps + 1, 2)``), ``meta_grad``, ``theta_new``, and ``meta_loss`` and
        ``meta_loss_after``, the mean post-adaptation loss from ``theta`` and from ``theta_new``.
    """
    u = torch.rand(n_tasks, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    angle = 2 * math.pi * (torch.arange(n_tasks) + u[:, 0] / 2) / n_tasks
    centres = 2 * torch.stack([angle.cos(), angle.sin()], 1)
    eigen, turn = 0.4 + 1.6 * u[:, 1:3], math.pi * u[:, 3]
    rot = torch.stack([turn.cos(), -turn.sin(), turn.sin(), turn.cos()], 1).view(n_tasks, 2, 2)
    curvatures = rot @ torch.diag_embed(eigen) @ rot.transpose(1, 2)
    theta = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
    path = _adapt(theta, centres, curvatures, alpha, inner_steps)
    meta_loss = _task_losses(path[:, -1], centres, curvatures).mean()
    (meta_grad,) = torch.autograd.grad(meta_loss, theta)
    theta_new = (theta - beta * meta_grad).detach().requires_grad_(True)
    after = _task_losses(_adapt(theta_new, centres, curvatures, alpha, inner_steps)[:, -1], centres, curvatures)
    return {"theta": theta.detach(), "centres": centres, "curvatures": curvatures, "adapted": path.detach(),
            "meta_grad": meta_grad, "theta_new": theta_new.detach(), "meta_loss": meta_loss.detach(),
            "meta_loss_after": after.mean().detach()}


def maml_diagram(seed: int = 0, n_tasks: int = 3, alpha: float = 0.4, beta: float = 1.5, inner_steps: int = 1) -> Figure:
    """MAML in a 2-D parameter space: each task's inner steps from θ, and the meta step that moves θ.

    Contours show the mean task loss, ``+`` each task's optimum; the steps are those of :func:`maml_toy_path`.

    Args:
        seed: seeds the tasks.
        n_tasks: number of tasks.
        alpha: inner learning rate.
        beta: outer (meta) learning rate.
        inner_steps: inner gradient steps per task.

    Returns:
        The Figure; its title gives the mean post-adaptation loss before and after the meta step.
    """
    import matplotlib.pyplot as plt

    toy = maml_toy_path(seed, n_tasks, alpha, beta, inner_steps)
    points = torch.cat([toy["centres"], toy["adapted"].flatten(0, 1), toy["theta_new"][None]])
    lo, hi = (points.min(0).values - 1.0).tolist(), (points.max(0).values + 1.0).tolist()
    xs, ys = torch.linspace(lo[0], hi[0], 80, dtype=torch.float64), torch.linspace(lo[1], hi[1], 80, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # (80, 80, 2)
    mean_loss = _task_losses(grid[..., None, :], toy["centres"], toy["curvatures"]).mean(-1)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.contour(xs, ys, mean_loss, levels=12, cmap="Greys", linewidths=0.8)
    for i in range(n_tasks):
        colour = plt.get_cmap("tab10")(i % 10)
        ax.plot(*toy["centres"][i].tolist(), marker="P", color=colour, markersize=10, label=f"task {i + 1} optimum")
        steps = toy["adapted"][i].tolist()
        for start, end in zip(steps[:-1], steps[1:]):
            _arrow(ax, start, end, colour=colour)
        ax.text(steps[-1][0], steps[-1][1], f" θ'_{i + 1}", color=colour, fontsize=9)
    theta = toy["theta"].tolist()
    _arrow(ax, theta, toy["theta_new"].tolist(), label="meta step", offset=(0, -0.25), width=2.5)
    ax.plot(*theta, "ko")
    ax.text(theta[0], theta[1], " θ", fontsize=10)
    ax.set_title(f"MAML: mean post-adaptation loss {toy['meta_loss']:.2f} → {toy['meta_loss_after']:.2f}",
                 fontsize=LABEL_SIZE)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    ax.set(xlabel="θ₁", ylabel="θ₂", aspect="equal")
    return finish(fig)


__all__ = [
    "RANDOM_HATCH", "STAGE_COLOURS", "dann_diagram", "grl_factor", "maml_diagram", "maml_toy_path", "prototype_diagram",
    "prototype_toy", "strategy_stages_diagram", "vgg_taps_diagram",
]
