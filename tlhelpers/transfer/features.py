"""Run a frozen backbone once over a data set and cache what one layer outputs.

A frozen backbone gives the same features for the same image every epoch, so computing them
again in every epoch (the article's way) wastes almost all the training time. ``extract_features``
computes them once, in eval mode under ``torch.inference_mode``, pools convolutional maps to one
vector per image, and stores features and labels on disk under a key made of everything that
changes them: model, layer, weights, transform, pooling, precision and the data itself.

Example:
    >>> feats, labels = extract_features("vgg16", "fc7", loader, cache_dir="data/features")
    >>> feats.shape
    torch.Size([3680, 4096])
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast, overload

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, RandomSampler
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names
from tqdm.auto import tqdm

from tlhelpers.core.checkpoint import CheckpointError, atomic_save, safe_load
from tlhelpers.core.runtime import amp_dtype, autocast, get_device
from tlhelpers.models.api import head_name

_ARCH_BY_CLASS = {"MiniResNet": "mini_resnet", "MiniVGG": "mini_vgg"}
_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
_VGG_FEATURE_TYPES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d)
_VGG_CLASSIFIER_TYPES = (nn.Linear, nn.ReLU, nn.Dropout)


class LayerNotFoundError(ValueError):
    """A layer name that the model does not have."""


def _vgg_parts(model: nn.Module) -> tuple[nn.Sequential, nn.Sequential] | None:
    """``(features, classifier)`` of a VGG-layout model, else None.

    VGG layout: ``features`` of 3x3 convs, ReLUs, (BatchNorms) and max-pools; ``classifier`` of three Linears.
    """
    feats, head = getattr(model, "features", None), getattr(model, "classifier", None)
    if not isinstance(feats, nn.Sequential) or not isinstance(head, nn.Sequential):
        return None
    convs = [m for m in feats if isinstance(m, nn.Conv2d)]
    vgg = (
        bool(convs) and all(isinstance(m, _VGG_FEATURE_TYPES) for m in feats)
        and all(m.kernel_size == (3, 3) for m in convs) and any(isinstance(m, nn.MaxPool2d) for m in feats)
        and all(isinstance(m, _VGG_CLASSIFIER_TYPES) for m in head)
        and sum(isinstance(m, nn.Linear) for m in head) == 3
    )
    return (feats, head) if vgg else None


def vgg_aliases(model: nn.Module) -> dict[str, str]:
    """The VGG papers' layer names of a VGG-layout model, read from its modules (empty for other models).

    Blocks end at each max-pool: ``conv{b}_{i}`` is the ReLU after the ``i``-th convolution of block
    ``b`` (after its BatchNorm in ``vgg*_bn``), ``pool{b}`` the block's max-pool, ``fc6`` and ``fc7``
    the ReLUs after the classifier's first two Linears and ``logits`` its last Linear. Names follow
    each model's own configuration: ``conv5_3`` is ``features.29`` in ``vgg16`` (its 13th
    convolution) and ``features.33`` in ``vgg19`` (its 15th), and the same index in ``mini_vgg`` as
    in ``vgg16``.
    """
    parts = _vgg_parts(model)
    if parts is None:
        return {}
    feats, head = parts
    aliases: dict[str, str] = {}
    block, conv = 1, 0
    for i, m in enumerate(feats):
        if isinstance(m, nn.Conv2d):
            conv += 1
            aliases[f"conv{block}_{conv}"] = f"features.{i}"
        elif isinstance(m, nn.ReLU) and conv:
            aliases[f"conv{block}_{conv}"] = f"features.{i}"
        elif isinstance(m, nn.MaxPool2d):
            aliases[f"pool{block}"] = f"features.{i}"
            block, conv = block + 1, 0
    linears = [i for i, m in enumerate(head) if isinstance(m, nn.Linear)]
    for k, i in enumerate(linears[:-1]):
        after = i + 1 if i + 1 < len(head) and isinstance(head[i + 1], nn.ReLU) else i
        aliases[f"fc{6 + k}"] = f"classifier.{after}"
    aliases["logits"] = f"classifier.{linears[-1]}"
    return aliases


def _is_resnet_layout(model: nn.Module) -> bool:
    """``layer1`` ... ``layer4``: each a non-empty ``nn.Sequential`` of blocks (torchvision's ResNets, MiniResNet)."""
    stages = [getattr(model, name, None) for name in _RESNET_STAGES]
    return all(isinstance(s, nn.Sequential) and len(s) > 0 for s in stages)


def resnet_aliases(model: nn.Module, nodes: list[str] | None = None) -> dict[str, str]:
    """``layer1`` ... ``layer4`` of a ResNet-layout model: each stage's output, its LAST block's last node.

    Read from the model's own graph, so every depth gets its own nodes: ``layer3`` is
    ``layer3.5.relu_2`` in ResNet-50 (6 blocks) and ``layer3.22.relu_2`` in ResNet-101 (23 blocks).
    Empty for other models.

    Args:
        model: the network.
        nodes: its graph nodes in execution order (traced when None).
    """
    if not _is_resnet_layout(model):
        return {}
    nodes = _graph_nodes(model) if nodes is None else nodes
    aliases = {}
    for stage in _RESNET_STAGES:
        last = f"{stage}.{len(getattr(model, stage)) - 1}."
        inside = [n for n in nodes if n.startswith(last)]
        if inside:
            aliases[stage] = inside[-1]
    return aliases


def _graph_nodes(model: nn.Module) -> list[str]:
    """The model's graph nodes in eval mode, in execution order (the model's own mode is kept)."""
    return get_graph_node_names(model)[1]


def _resnet_name(model: nn.Module) -> str | None:
    """torchvision's name of a ResNet from its structure: depth, block type, groups and width."""
    if not _is_resnet_layout(model):
        return None
    first = cast(nn.Sequential, model.layer1)[0]  # _is_resnet_layout checked: an nn.Sequential of blocks
    blocks = sum(len(getattr(model, stage)) for stage in _RESNET_STAGES)
    convs = 3 if hasattr(first, "conv3") else 2
    depth = convs * blocks + 2
    conv2 = getattr(first, "conv2", None)
    if convs == 3 and isinstance(conv2, nn.Conv2d):
        width = conv2.out_channels  # 64 * base_width / 64 * groups
        if conv2.groups > 1:
            return f"resnext{depth}_{conv2.groups}x{width // conv2.groups}d"
        if width == 2 * cast(nn.Conv2d, first.conv1).in_channels:  # a bottleneck's conv1 (it has a conv3)
            return f"wide_resnet{depth}_2"
    return f"resnet{depth}"


def _arch_name(model: nn.Module, name: str | None) -> str:
    if name:
        return name
    cls = type(model).__name__
    parts = _vgg_parts(model) if cls == "VGG" else None
    if parts is not None:  # vgg11 ... vgg19(_bn): weight layers = convs + 3 Linears
        n_convs = sum(isinstance(m, nn.Conv2d) for m in parts[0])
        bn = any(isinstance(m, nn.BatchNorm2d) for m in parts[0])
        return f"vgg{n_convs + 3}{'_bn' if bn else ''}"
    if cls == "ResNet":
        return _resnet_name(model) or "resnet"
    return _ARCH_BY_CLASS.get(cls, cls.lower())


def layer_aliases(model: nn.Module, model_name: str | None = None, nodes: list[str] | None = None) -> dict[str, str]:
    """Friendly layer names of ``model`` and their graph nodes, read from the model itself.

    VGG-layout models get the VGG papers' names (:func:`vgg_aliases`), ResNet-layout models
    ``layer1`` ... ``layer4`` (:func:`resnet_aliases`); every model with the nodes gets
    ``avgpool`` and ``logits`` (its classification head).

    Args:
        model: the network.
        model_name: unused; kept for callers that pass the architecture's name.
        nodes: the model's graph nodes (traced when None).
    """
    del model_name  # aliases come from the module graph, never from a table of names
    nodes = _graph_nodes(model) if nodes is None else nodes
    aliases = vgg_aliases(model) or resnet_aliases(model, nodes)
    if "avgpool" in nodes:
        aliases.setdefault("avgpool", "avgpool")
    try:
        head = head_name(model)
    except ValueError:
        head = None
    if head in nodes:
        aliases.setdefault("logits", head)
    return aliases


def valid_layers(model: nn.Module, model_name: str | None = None) -> list[str]:
    """Layer names :func:`extract_features` accepts for ``model``: aliases, then graph nodes.

    Args:
        model: the network.
        model_name: unused; kept for callers that pass the architecture's name.
    """
    nodes = _graph_nodes(model)
    aliases = [a for a, node in layer_aliases(model, model_name, nodes).items() if node in nodes]
    return aliases + [n for n in nodes if n != "x"]


def resolve_layer(model: nn.Module, layer: str, model_name: str | None = None) -> str:
    """Map an alias ("fc7", "layer3") or node name ("classifier.4") to the graph node to return.

    Args:
        model: the network.
        layer: an alias or a graph node name.
        model_name: the architecture's name for the error message (guessed from the model when None).

    Raises:
        LayerNotFoundError: if ``model`` has no such layer; the one-line message names the model
            and lists its aliases and valid node names.
    """
    nodes = _graph_nodes(model)
    aliases = layer_aliases(model, model_name, nodes)
    node = aliases.get(layer, layer)
    layers = [n for n in nodes if n != "x"]
    if node not in layers:
        valid = [a for a, n in aliases.items() if n in layers] + layers
        shown = ", ".join(valid[:60]) + (" ..." if len(valid) > 60 else "")
        raise LayerNotFoundError(f"model {_arch_name(model, model_name)!r} has no layer {layer!r}; use one of: {shown}")
    return node


def _stable_repr(obj: Any) -> str:
    # An object address in a repr (lambdas, plain functions) changes every session: the key then
    # misses, which is safe; stripping it could make two different lambdas collide, which is not.
    return repr(obj)


def weights_id(model: nn.Module) -> str:
    """A short fingerprint of the model's parameters and buffers (sums and norms per tensor)."""
    h = hashlib.sha1()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            t32 = t.detach().float()
            h.update(f"{name}{tuple(t.shape)}{t32.sum().item():.8e}{t32.norm().item():.8e}".encode())
    return h.hexdigest()[:16]


def dataset_fingerprint(dataset: Any) -> str:
    """A fingerprint of a data set: the bytes of in-memory tensors, else its type, length and repr."""
    h = hashlib.sha1(f"{type(dataset).__name__}:{len(dataset)}".encode())
    images = getattr(dataset, "images", None)
    labels = getattr(dataset, "labels", None)
    if isinstance(images, Tensor) and isinstance(labels, Tensor):
        h.update(images.contiguous().numpy().tobytes())
        h.update(labels.contiguous().numpy().tobytes())
    else:
        h.update(_stable_repr(dataset).encode())
        indices = getattr(dataset, "indices", None)
        if indices is not None:
            h.update(str(list(indices)).encode())
            h.update(dataset_fingerprint(dataset.dataset).encode())
    return h.hexdigest()[:16]


def _sequential(loader: DataLoader) -> DataLoader:
    """The loader itself, or a non-shuffling copy with a warning if it shuffles."""
    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    if not isinstance(sampler, RandomSampler) and not isinstance(getattr(batch_sampler, "sampler", None), RandomSampler):
        return loader
    warnings.warn(
        "the loader shuffles; extracting in data set order instead so features line up with "
        "dataset items (pass a loader with shuffle=False to silence this).",
        stacklevel=3,
    )
    return DataLoader(
        loader.dataset, batch_size=loader.batch_size or 1, shuffle=False, num_workers=loader.num_workers,
        collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
    )


def _build_model(name: str) -> nn.Module:
    """Chapter 1's builder: ImageNet weights from the hub cache, or random init with a banner."""
    from tlhelpers.models.backbones import build_classifier

    return build_classifier(name, num_classes=1000).model


def _pool(out: Tensor, pool: bool) -> Tensor:
    if out.ndim == 4 and pool:
        return out.float().mean(dim=(2, 3))
    return out.float().flatten(1)


# A str is a Sequence[str] too: the str overload comes first and wins (typeshed's idiom for this overlap).
@overload
def extract_features(  # type: ignore[overload-overlap]
    model_or_name: nn.Module | str,
    layer: str,
    loader: DataLoader,
    *,
    cache_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    amp: bool = True,
    progress: bool = True,
    pool: bool = True,
    model_name: str | None = None,
) -> tuple[Tensor, Tensor]: ...


@overload
def extract_features(
    model_or_name: nn.Module | str,
    layer: Sequence[str],
    loader: DataLoader,
    *,
    cache_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    amp: bool = True,
    progress: bool = True,
    pool: bool = True,
    model_name: str | None = None,
) -> tuple[dict[str, Tensor], Tensor]: ...


def extract_features(
    model_or_name: nn.Module | str,
    layer: str | Sequence[str],
    loader: DataLoader,
    *,
    cache_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    amp: bool = True,
    progress: bool = True,
    pool: bool = True,
    model_name: str | None = None,
) -> tuple[Tensor | dict[str, Tensor], Tensor]:
    """Features of a frozen model at one or more layers, over a loader of ``(x, y)`` batches.

    Convolutional maps are global-average pooled to one vector per image (``pool=False``
    flattens them instead). With ``cache_dir`` each layer's result is saved as one file whose key
    covers model, layer, weights, transform, pooling, precision and data; a later call with the
    same key loads it without running the model, and a file with another key (or a truncated
    one) is recomputed, never reused. Writes are atomic, so an interrupted run leaves no file
    that could be read as complete. Several layers come from one forward pass.

    Args:
        model_or_name: a network, or a torchvision name such as ``"vgg16"`` built with
            :func:`tlhelpers.models.backbones.build_classifier` (ImageNet weights when cached, else random).
        layer: an alias (``"conv4_3"``, ``"conv5_3"``, ``"fc7"``, ``"avgpool"``) or graph node
            name, or a list of them.
        loader: yields ``(images, labels)``; a shuffling loader is replaced by an ordered copy
            (with a warning) so that row ``i`` is dataset item ``i``.
        cache_dir: folder for cached features; None disables the cache.
        device: see :func:`tlhelpers.core.runtime.get_device`.
        amp: mixed precision on CUDA (part of the cache key); ignored on CPU.
        progress: show a progress bar over batches.
        pool: average-pool 4-D maps (True) or flatten them (False).
        model_name: the architecture's name for aliases and the key, when passing a module.

    Returns:
        ``(features, labels)`` for one layer, or ``({layer: features}, labels)`` for a list.

    Shape:
        features: ``(N, D)`` float32 on the CPU, ``D`` the channels (pooled) or ``C*H*W``;
        labels: ``(N,)``.

    Raises:
        LayerNotFoundError: for a layer the model lacks (the valid names are listed).
        ValueError: for an empty layer list or an empty loader.
    """
    layers = [layer] if isinstance(layer, str) else list(layer)
    if not layers:
        raise ValueError("layer is an empty list; pass a layer name such as 'fc7'.")
    if isinstance(model_or_name, str):
        model_name = model_name or model_or_name
        model = _build_model(model_or_name)
    else:
        model = model_or_name
    name = _arch_name(model, model_name)
    nodes = {lay: resolve_layer(model, lay, name) for lay in layers}
    loader = _sequential(loader)
    dev = get_device(device)
    dtype = amp_dtype(dev) if amp else None

    base = {
        "model": name,
        "weights": getattr(model, "weights_id", None) or weights_id(model),
        "transform": _stable_repr(getattr(loader.dataset, "transform", None)),
        "data": dataset_fingerprint(loader.dataset),
        "pool": pool,
        "precision": str(dtype or torch.float32),
    }
    keys = {lay: {**base, "layer": nodes[lay]} for lay in layers}
    paths = {lay: _cache_path(cache_dir, name, lay, keys[lay]) for lay in layers} if cache_dir else {}
    found: dict[str, Tensor] = {}
    labels: Tensor | None = None
    for lay, path in paths.items():
        hit = _read_cache(path, keys[lay])
        if hit is not None:
            found[lay], labels = hit

    missing = [lay for lay in layers if lay not in found]
    if missing:
        extractor = create_feature_extractor(model, return_nodes={nodes[lay]: lay for lay in missing}).to(dev).eval()
        chunks: dict[str, list[Tensor]] = {lay: [] for lay in missing}
        all_labels = []
        with torch.inference_mode():
            # The bar never holds the loader (see tlhelpers.training.engine.fit): workers end with the loader.
            total = len(loader) if hasattr(loader, "__len__") else None
            bar = tqdm(total=total, desc=f"extract {name}:{','.join(missing)}", leave=False, disable=not progress)
            for batch in loader:
                bar.update()
                with autocast(dev, amp):
                    outs = extractor(batch[0].to(dev, non_blocking=True))
                for lay in missing:
                    chunks[lay].append(_pool(outs[lay], pool).cpu())
                all_labels.append(torch.as_tensor(batch[1]).cpu())
            bar.close()
        if not all_labels:
            raise ValueError("the loader yielded no batches; check that the data set is not empty.")
        labels = torch.cat(all_labels)
        for lay in missing:
            found[lay] = torch.cat(chunks[lay])
            if lay in paths:
                atomic_save({"key": keys[lay], "features": found[lay], "labels": labels, "complete": True}, paths[lay])
    assert labels is not None
    if isinstance(layer, str):
        return found[layer], labels
    return {lay: found[lay] for lay in layers}, labels


def _cache_path(cache_dir: str | Path, name: str, layer: str, key: dict[str, Any]) -> Path:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}_{layer}")
    return Path(cache_dir) / f"{safe}_{digest}.pt"


def _read_cache(path: Path, key: dict[str, Any]) -> tuple[Tensor, Tensor] | None:
    """Cached ``(features, labels)`` when the file exists, is complete and has exactly ``key``."""
    if not path.exists():
        return None
    try:
        blob = safe_load(path)
    except CheckpointError:
        warnings.warn(f"feature cache {path.name} is unreadable (truncated?); recomputing.", stacklevel=3)
        return None
    if not isinstance(blob, dict) or blob.get("key") != key or not blob.get("complete"):
        warnings.warn(f"feature cache {path.name} was written for another model or data; recomputing.", stacklevel=3)
        return None
    if len(blob["features"]) != len(blob["labels"]):
        return None
    return blob["features"], blob["labels"]
