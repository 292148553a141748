"""Linear probe on frozen pretrained features: how far do ImageNet features get on your images?

Folder layout (torchvision ``ImageFolder``), either with explicit splits::

    my_images/train/<class name>/*.jpg
    my_images/val/<class name>/*.jpg

or one folder per class (``my_images/<class name>/*.jpg``), of which a stratified 20 % is held out.

The backbone is never trained: each image goes through it once, the features of one layer
(``avgpool`` by default, the vector a ResNet's head sees) are cached on disk, and a standardised
multinomial logistic regression is fitted on them. A strong probe means the pretrained features
already separate your classes (fine-tuning will add little); a weak one means they do not.

Usage:
    python features_probe.py my_images --arch resnet50
    python features_probe.py my_images --arch resnet18 --image-size 160 --C 0.5 --out runs/probe
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from tlhelpers import (
    ImageTensorDataset,
    build_classifier,
    extract_features,
    get_device,
    seed_everything,
    sklearn_probe,
    stored_size,
    to_tensor_dataset,
    weights_preset,
)


def load_folder(root: Path, image_size: int, cache_dir: Path, seed: int) -> tuple[ImageTensorDataset, ImageTensorDataset]:
    """Train and validation sets from an ImageFolder tree, decoded once into cached uint8 tensors."""
    if not root.is_dir():
        raise SystemExit(f"error: {root} is not a folder; pass a folder laid out <class>/*.jpg or train/<class>/*.jpg.")
    if not (root / "train").is_dir():
        return to_tensor_dataset(ImageFolder(root), image_size, cache_dir / "all.pt").split(0.8, seed=seed)
    train = to_tensor_dataset(ImageFolder(root / "train"), image_size, cache_dir / "train.pt")
    if not (root / "val").is_dir():
        return train.split(0.8, seed=seed)
    val = to_tensor_dataset(ImageFolder(root / "val"), image_size, cache_dir / "val.pt")
    if val.classes != train.classes:
        raise SystemExit(f"error: train/ and val/ have different classes ({train.classes} vs {val.classes}).")
    return train, val


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description="Linear probe on frozen pretrained features of an image folder.")
    parser.add_argument("data", type=Path, help="image folder (ImageFolder layout)")
    parser.add_argument("--arch", default="resnet50", help="any torchvision classifier name")
    parser.add_argument("--layer", default="avgpool", help="layer whose (pooled) output is the feature vector")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    parser.add_argument("--out", type=Path, default=Path("runs/features_probe"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    device = get_device()
    preset = weights_preset(args.arch, image_size=args.image_size)
    train_set, val_set = load_folder(args.data, stored_size(preset), args.out / "cache", args.seed)
    print(f"{len(train_set)} training and {len(val_set)} validation images, classes: {train_set.classes}")

    if train_set.num_classes < 2:
        raise SystemExit(f"error: {args.data} has {train_set.num_classes} class folder; a probe needs at least 2.")
    built = build_classifier(args.arch, num_classes=train_set.num_classes)
    feats = {}
    for split, dataset in (("train", train_set), ("val", val_set)):
        loader = DataLoader(dataset.with_transform(preset), batch_size=args.batch_size)
        feats[split] = extract_features(built.model, args.layer, loader, cache_dir=args.out / "features",
                                        device=device, model_name=args.arch, progress=False)
    (x_train, y_train), (x_val, y_val) = feats["train"], feats["val"]
    probe = sklearn_probe(x_train, y_train, x_val, y_val, C=args.C)
    summary = {
        "arch": args.arch, "pretrained": built.weights_loaded, "layer": args.layer, "feature_dim": x_train.shape[1],
        "train_acc": probe["train_acc"], "val_acc": probe["acc"], "chance": 1 / train_set.num_classes,
        "classes": train_set.classes, "n_train": len(train_set), "n_val": len(val_set),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{args.arch}:{args.layer} probe: validation accuracy {probe['acc']:.1%} "
          f"(chance {summary['chance']:.1%}) -> {args.out / 'metrics.json'}")
    return summary


if __name__ == "__main__":
    main()
