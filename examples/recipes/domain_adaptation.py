"""Adapt a pretrained classifier from a labelled folder to an unlabelled one with DANN.

Folders (the source in torchvision ``ImageFolder`` layout)::

    source/<class name>/*.jpg     labelled images, e.g. product photos
    target/*.jpg                  unlabelled images of the same classes in another domain,
                                  e.g. phone snapshots (any sub-folders are searched)

If ``target/`` happens to have exactly the source's class folders, its labels are used to
report the target accuracy, and for nothing else: training sees target images only (through
``UnlabeledDataset``, which drops labels).

DANN (Ganin et al. 2016) trains the classifier on the source while a domain discriminator,
behind a gradient reversal layer, pushes the backbone's features of the two domains together.
``--method source_only`` trains the same model without the discriminator's push: run both and
compare. A checkpoint is written after every epoch, so rerunning a command resumes it.

Outputs in ``--out``: ``metrics.json``, ``predictions.csv`` (a class for every target image),
``model_weights.pt`` (the classifier's state dict, for ``build_classifier(arch, n, weights=None)``)
and ``checkpoint.pt``.

Usage:
    python domain_adaptation.py source/ target/ --arch resnet18 --epochs 5
    python domain_adaptation.py source/ target/ --method source_only --out runs/source_only
"""

from __future__ import annotations

import argparse
import csv
import json
from functools import partial
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from tlhelpers import (
    DANN,
    ImageTensorDataset,
    PairedLoader,
    UnlabeledDataset,
    atomic_save,
    build_classifier,
    dann_step,
    evaluate,
    fingerprint_dataset,
    fit,
    get_device,
    get_head,
    image_transforms,
    predict,
    seed_everything,
    source_only_step,
    stored_size,
    to_tensor_dataset,
    warmup_cosine,
    weights_preset,
)


class ImageFiles(Dataset):
    """``(PIL image, 0)`` for each file of a list: an unlabelled folder for ``to_tensor_dataset``."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        with Image.open(self.files[i]) as image:
            return image.convert("RGB"), 0


def load_target(root: Path, classes: list[str], image_size: int, cache_dir: Path) -> tuple[ImageTensorDataset, list[str], bool]:
    """The target images, their file names, and whether they are labelled (class folders like the source's)."""
    if not root.is_dir():
        raise SystemExit(f"error: {root} is not a folder; pass a folder of target images.")
    if sorted(d.name for d in root.iterdir() if d.is_dir()) == classes:
        folder = ImageFolder(root)
        return to_tensor_dataset(folder, image_size, cache_dir / "target.pt"), [p for p, _ in folder.samples], True
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if not files:
        raise SystemExit(f"error: {root} has no images ({', '.join(IMG_EXTENSIONS)}); put the target images there.")
    dataset = to_tensor_dataset(ImageFiles(files), image_size, cache_dir / "target.pt", classes=["unlabelled"])
    return dataset, [str(p) for p in files], False


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description="Domain adaptation (DANN) from a labelled folder to an unlabelled one.")
    parser.add_argument("source", type=Path, help="labelled images, <class>/*.jpg")
    parser.add_argument("target", type=Path, help="unlabelled images of the same classes (or <class>/*.jpg to score)")
    parser.add_argument("--arch", default="resnet18", help="any torchvision classifier name")
    parser.add_argument("--method", choices=("dann", "source_only"), default="dann")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32, help="images per domain per step")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of the head and the discriminator")
    parser.add_argument("--backbone-mult", type=float, default=0.1, help="backbone LR as a fraction of --lr")
    parser.add_argument("--out", type=Path, default=Path("runs/domain_adaptation"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    device = get_device()
    preset = weights_preset(args.arch, image_size=args.image_size)
    size = stored_size(preset)
    if not args.source.is_dir():
        raise SystemExit(f"error: {args.source} is not a folder; pass a folder laid out <class>/*.jpg.")
    source = to_tensor_dataset(ImageFolder(args.source), size, args.out / "cache" / "source.pt")
    if source.num_classes < 2:
        raise SystemExit(f"error: {args.source} has {source.num_classes} class folder; a classifier needs at least 2.")
    target, target_files, labelled = load_target(args.target, source.classes, size, args.out / "cache")
    source_train, source_val = source.split(0.8, seed=args.seed)
    print(f"source: {len(source_train)} training and {len(source_val)} validation images, classes {source.classes}; "
          f"target: {len(target)} {'labelled (for scoring only)' if labelled else 'unlabelled'} images")

    built = build_classifier(args.arch, num_classes=source.num_classes)
    model = DANN(built.model)  # the discriminator is sized from the backbone's feature length
    train_tf = image_transforms(preset, train=True)
    batch = min(args.batch_size, len(source_train), len(target))
    paired = PairedLoader(
        DataLoader(source_train.with_transform(train_tf), batch_size=batch, shuffle=True, drop_last=True),
        DataLoader(UnlabeledDataset(target.with_transform(train_tf)), batch_size=batch, shuffle=True, drop_last=True),
    )
    head = {id(p) for p in get_head(built.model).parameters()}
    backbone = [p for p in built.model.parameters() if id(p) not in head]
    optimizer = torch.optim.AdamW([
        {"params": backbone, "lr": args.lr * args.backbone_mult},
        {"params": [*get_head(built.model).parameters(), *model.discriminator.parameters()], "lr": args.lr},
    ], weight_decay=0.01)
    val_loader = DataLoader(source_val.with_transform(preset), batch_size=2 * args.batch_size)
    history = fit(
        model, paired, args.epochs, optimizer=optimizer, scheduler=partial(warmup_cosine, warmup_steps=0.1),
        val_loader=val_loader, step_fn=dann_step if args.method == "dann" else source_only_step,
        device=device, checkpoint_path=args.out / "checkpoint.pt", progress=False,
        # a rerun resumes; other settings or other images are refused, naming the change
        config={k: str(v) for k, v in vars(args).items() if k != "out"},
        data_fingerprint=fingerprint_dataset(ConcatDataset([source, target])),
    )

    source_acc = evaluate(model, val_loader, device=device)["acc"]
    logits, target_y = predict(model, DataLoader(target.with_transform(preset), batch_size=2 * args.batch_size),
                               device=device)
    predicted = logits.argmax(1)
    target_acc = (predicted == target_y).float().mean().item() if labelled else None
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "predicted"])
        writer.writerows([file, source.classes[c]] for file, c in zip(target_files, predicted.tolist()))
    atomic_save(built.model.state_dict(), args.out / "model_weights.pt")
    summary = {
        "arch": args.arch, "pretrained": built.weights_loaded, "method": args.method, "epochs": len(history),
        "source_val_acc": source_acc, "target_acc": target_acc, "classes": source.classes,
        "target_predicted_counts": torch.bincount(predicted, minlength=source.num_classes).tolist(),
        "domain_acc": history["domain_acc"][-1] if "domain_acc" in history.to_dict() else None,
    }
    (args.out / "metrics.json").write_text(json.dumps({**summary, "history": history.to_dict()}, indent=2) + "\n")
    score = f", target accuracy {target_acc:.1%}" if labelled else ""
    print(f"{args.method}: source validation accuracy {source_acc:.1%}{score} -> {args.out / 'predictions.csv'}")
    return summary


if __name__ == "__main__":
    main()
