"""A stand-in for ImageNet pretraining when no weights can be downloaded (reduced mode).

Fine-tuning only makes sense from a backbone that learned something. Offline, with no ImageNet
weights, we pretrain the same architecture on a *different but related* task, shapes classes
10-19 (rings, hexagons, ... with dotted or checkered fills), and then fine-tune it on classes 0-9
(circles, squares, ... solid or striped). The two tasks share edges, corners and textures but no
classes, which is what ImageNet and Oxford-IIIT Pet share on a larger scale.

The result is cached under ``data_root()/checkpoints/`` (written atomically, loaded with
``weights_only=True``), so only the first run pays for it. The defaults are a quick pretraining;
the shapes' random colours make the task hard, so a backbone worth fine-tuning needs more
(chapter 1 uses 500 images per class, 10 epochs, ``lr=3e-3``: about 75-80 % on held-out source
images, see :func:`source_accuracy`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor
from torch.utils.data import DataLoader

from tlhelpers.core.checkpoint import CheckpointError, atomic_save, safe_load
from tlhelpers.core.runtime import data_root, loader_kwargs, seed_everything
from tlhelpers.data.preprocessing import image_transforms, plain_preset
from tlhelpers.models.backbones import build_classifier
from tlhelpers.training.engine import evaluate, fit
from tlhelpers.training.schedules import warmup_cosine

#: The shapes classes of the pretraining task; the target task uses 0-9.
SOURCE_CLASSES = tuple(range(10, 20))


def proxy_pretrained_state(
    arch: str,
    image_size: int,
    *,
    n_per_class: int = 500,
    num_epochs: int = 10,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    root: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Tensor]:
    """Pretrain ``arch`` on shapes classes 10-19 once and return its state dict (cached).

    The cache file name holds every argument that changes the result, so a changed setting
    retrains instead of reusing stale weights. A corrupt cache file is retrained and replaced.

    Args:
        arch: torchvision architecture name (random init, then trained here).
        image_size: side of the shapes images; use the fine-tuning size.
        n_per_class: training images per source class.
        num_epochs: pretraining epochs.
        lr: AdamW learning rate.
        batch_size: batch size.
        seed: seed of the data and the init.
        root: data folder; default :func:`tlhelpers.core.runtime.data_root`.
        progress: show progress bars.

    Returns:
        The pretrained ``state_dict`` (head of 10 classes included; the fine-tuning replaces it).
    """
    from tlhelpers.course.shapes import make_shapes

    root = Path(root) if root is not None else data_root()
    path = root / "checkpoints" / f"proxy-{arch}-{image_size}px-n{n_per_class}-e{num_epochs}-lr{lr:g}-b{batch_size}-s{seed}.pt"
    if path.exists():
        try:
            return safe_load(path)
        except CheckpointError:
            path.unlink()
    seed_everything(seed)
    source = make_shapes("train", n_per_class, image_size, class_ids=SOURCE_CLASSES, seed=seed)
    source = source.with_transform(image_transforms(plain_preset(image_size), train=True, crop_scale=(0.7, 1.0)))
    model = build_classifier(arch, len(SOURCE_CLASSES), weights=None).model
    loader = DataLoader(source, batch_size=batch_size, shuffle=True, drop_last=True, **loader_kwargs())
    fit(
        model, loader, num_epochs, lr=lr, weight_decay=1e-4, progress=progress, channels_last=True,
        scheduler=functools.partial(warmup_cosine, warmup_steps=0.1), desc=f"pretrain {arch} on shapes 10-19",
    )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_save(state, path)
    return state


def source_accuracy(
    state: Mapping[str, Tensor],
    arch: str,
    image_size: int,
    *,
    n_per_class: int = 50,
    seed: int = 0,
) -> float:
    """Test accuracy of a proxy-pretrained state dict on held-out images of its own task (classes 10-19).

    A quick check that the stand-in for ImageNet learned something before we fine-tune from it.

    Args:
        state: what :func:`proxy_pretrained_state` returned (head of 10 classes included).
        arch: the architecture it was trained with.
        image_size: the image size it was trained at.
        n_per_class: test images per source class.
        seed: seed of the shapes (the ``"test"`` split never overlaps the training images).

    Returns:
        Accuracy in [0, 1]; chance is 0.1.
    """
    from tlhelpers.course.shapes import make_shapes

    model = build_classifier(arch, len(SOURCE_CLASSES), weights=None).model
    model.load_state_dict(state)
    test = make_shapes("test", n_per_class, image_size, class_ids=SOURCE_CLASSES, seed=seed)
    loader = DataLoader(test.with_transform(image_transforms(plain_preset(image_size), train=False)), batch_size=256)
    return float(evaluate(model, loader)["acc"])
