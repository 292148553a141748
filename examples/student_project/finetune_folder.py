"""Fine-tune a pretrained torchvision classifier on your own folder of images.

Folder layout (torchvision ``ImageFolder``), either with explicit splits::

    my_images/train/<class name>/*.jpg
    my_images/val/<class name>/*.jpg

or one folder per class (``my_images/<class name>/*.jpg``), of which a stratified 20 % is held out.

The recipe is chapter 1's all-rounder: ImageNet weights, a new head, full fine-tuning with the
backbone at a tenth of the head's learning rate, warm-up and cosine decay. Images are decoded and
resized once and cached (the cache is keyed on the folder's files, sizes, modification times and
labels, so editing the folder recomputes it); a checkpoint is written after every epoch, so
rerunning the same command after an interruption resumes where it stopped, exactly. The checkpoint
records the run's settings and a fingerprint of the folder: rerunning with another setting (``--lr``,
``--arch``...) or changed images is refused with a message naming the change, instead of silently
continuing the old run. Pass ``--restart`` to start over in the same ``--out`` folder, or pick
another ``--out``.

Usage:
    python finetune_folder.py my_images --arch resnet50 --epochs 5
    python finetune_folder.py my_images --arch mobilenet_v3_large --image-size 160 --out runs/mobilenet
    python finetune_folder.py my_images --lr 3e-3 --restart    # a new run over runs/finetune's old one
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from tlhelpers.core.checkpoint import CheckpointError, atomic_save, fingerprint_dataset
from tlhelpers.core.runtime import get_device, loader_kwargs, seed_everything
from tlhelpers.data.preprocessing import image_transforms, stored_size, weights_preset
from tlhelpers.data.tensor_cache import to_tensor_dataset
from tlhelpers.data.tensor_dataset import ImageTensorDataset
from tlhelpers.models.backbones import build_classifier
from tlhelpers.training.engine import evaluate, fit
from tlhelpers.training.freezing import count_parameters
from tlhelpers.training.param_groups import discriminative_groups
from tlhelpers.training.schedules import warmup_cosine


def load_folder(root: Path, image_size: int, cache_dir: Path, seed: int) -> tuple[ImageTensorDataset, ImageTensorDataset]:
    """Train and validation sets from an ImageFolder tree, decoded once into cached uint8 tensors."""
    if not root.is_dir():
        raise SystemExit(f"error: {root} is not a folder; pass a folder laid out <class>/*.jpg or train/<class>/*.jpg.")
    if (root / "train").is_dir():
        train = to_tensor_dataset(ImageFolder(root / "train"), image_size, cache_dir / "train.pt")
        val_root = root / "val" if (root / "val").is_dir() else None
        if val_root is None:
            return train.split(0.8, seed=seed)
        val = to_tensor_dataset(ImageFolder(val_root), image_size, cache_dir / "val.pt")
        if val.classes != train.classes:
            raise SystemExit(f"error: train/ and val/ have different classes ({train.classes} vs {val.classes}).")
        return train, val
    return to_tensor_dataset(ImageFolder(root), image_size, cache_dir / "all.pt").split(0.8, seed=seed)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description="Fine-tune a pretrained classifier on a folder of images.")
    parser.add_argument("data", type=Path, help="image folder (ImageFolder layout)")
    parser.add_argument("--arch", default="resnet50", help="any torchvision classifier name")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="the head's learning rate")
    parser.add_argument("--backbone-mult", type=float, default=0.1, help="backbone LR as a fraction of the head's")
    parser.add_argument("--out", type=Path, default=Path("runs/finetune"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--restart", action="store_true", help="start over, replacing the checkpoint in --out")
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    device = get_device()
    # the preprocessing the weights expect, at the crop size asked for (resize margin scaled with it)
    preset = weights_preset(args.arch, image_size=args.image_size)
    train_set, val_set = load_folder(args.data, stored_size(preset), args.out / "cache", args.seed)
    print(f"{len(train_set)} training and {len(val_set)} validation images, classes: {train_set.classes}")

    built = build_classifier(args.arch, num_classes=train_set.num_classes)
    train_set = train_set.with_transform(image_transforms(preset, train=True))
    val_set = val_set.with_transform(image_transforms(preset, train=False))
    kw = loader_kwargs(device)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=len(train_set) > args.batch_size,
                              generator=torch.Generator().manual_seed(args.seed), **kw)
    val_loader = DataLoader(val_set, batch_size=2 * args.batch_size, **kw)

    model = built.model
    optimizer = torch.optim.AdamW(discriminative_groups(model, args.lr, args.backbone_mult, weight_decay=0.01))
    # The run's identity: every setting that shapes the result (not where the files are) and the
    # folder's content (relative paths, sizes and labels of its images).
    config = {k: v for k, v in vars(args).items() if k not in ("data", "out", "restart")}
    try:
        history = fit(
            model, train_loader, args.epochs, optimizer=optimizer, val_loader=val_loader,
            scheduler=partial(warmup_cosine, warmup_steps=0.1), device=device,
            channels_last=device.type == "cuda", checkpoint_path=args.out / "checkpoint.pt", resume=not args.restart,
            config=config, data_fingerprint=fingerprint_dataset(ImageFolder(args.data)),
        )
    except CheckpointError as exc:
        raise SystemExit(f"error: {exc} (here: add --restart, or pass another --out)") from None
    metrics = evaluate(model, val_loader, device=device)
    summary = {
        "arch": args.arch, "pretrained": built.weights_loaded, "val_acc": metrics["acc"], "val_loss": metrics["loss"],
        "trainable_parameters": count_parameters(model), "epochs": len(history), "classes": train_set.classes,
    }
    (args.out / "metrics.json").write_text(json.dumps({**summary, "history": history.to_dict()}, indent=2) + "\n")
    atomic_save(model.state_dict(), args.out / "model_weights.pt")
    print(f"validation accuracy {metrics['acc']:.1%} -> {args.out / 'metrics.json'}, weights in {args.out / 'model_weights.pt'}")
    return summary


if __name__ == "__main__":
    main()
