"""Classify new classes from a handful of images each: prototypes of frozen pretrained features.

Two folders with the same class sub-folders (torchvision ``ImageFolder`` layout)::

    support/<class name>/*.jpg   a few labelled images per class (1 to 20)
    query/<class name>/*.jpg     the images to classify (labelled here, to measure accuracy)

Nothing is trained. Every image is embedded once by a pretrained backbone (``avgpool`` features
by default); a class's prototype is the mean feature of its support images, and a query gets the
class of the nearest prototype (squared Euclidean distance, as in Prototypical Networks). By
default features are centred on the support mean and scaled to unit length first ("CL2N", which
helps frozen ImageNet features a lot); ``--raw`` turns that off.

Usage:
    python fewshot_prototypes.py support/ query/ --arch resnet50
    python fewshot_prototypes.py support/ query/ --arch resnet18 --image-size 160 --out runs/protos
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from tlhelpers import (
    build_classifier,
    extract_features,
    get_device,
    prototypes,
    seed_everything,
    squared_distance_logits,
    stored_size,
    to_tensor_dataset,
    weights_preset,
)


def load_folder(root: Path) -> ImageFolder:
    """An ImageFolder, with a one-line error for a missing or empty folder."""
    if not root.is_dir():
        raise SystemExit(f"error: {root} is not a folder; pass a folder laid out <class>/*.jpg.")
    return ImageFolder(root)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description="Few-shot classification with prototypes of pretrained features.")
    parser.add_argument("support", type=Path, help="folder of labelled support images, <class>/*.jpg")
    parser.add_argument("query", type=Path, help="folder of query images with the same class folders")
    parser.add_argument("--arch", default="resnet50", help="any torchvision classifier name")
    parser.add_argument("--layer", default="avgpool", help="layer whose (pooled) output is the feature vector")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--raw", action="store_true", help="use raw features (no centring / L2 normalisation)")
    parser.add_argument("--out", type=Path, default=Path("runs/fewshot_prototypes"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    device = get_device()
    preset = weights_preset(args.arch, image_size=args.image_size)
    support_folder, query_folder = load_folder(args.support), load_folder(args.query)
    if support_folder.classes != query_folder.classes:
        raise SystemExit(f"error: support and query have different classes ({support_folder.classes} vs "
                         f"{query_folder.classes}); give both the same class folders.")
    classes = support_folder.classes
    if len(classes) < 2:
        raise SystemExit(f"error: {args.support} has {len(classes)} class folder; prototypes need at least 2 classes.")
    size = stored_size(preset)
    support = to_tensor_dataset(support_folder, size, args.out / "cache" / "support.pt", progress=False)
    query = to_tensor_dataset(query_folder, size, args.out / "cache" / "query.pt", progress=False)
    print(f"{len(classes)} classes, {len(support)} support and {len(query)} query images")

    model = build_classifier(args.arch, num_classes=len(classes))
    embedded = []
    for dataset in (support, query):
        loader = DataLoader(dataset.with_transform(preset), batch_size=args.batch_size)
        embedded.append(extract_features(model.model, args.layer, loader, cache_dir=args.out / "features",
                                         device=device, model_name=args.arch, progress=False))
    (support_x, support_y), (query_x, query_y) = embedded
    if not args.raw:
        centre = support_x.mean(0, keepdim=True)
        support_x = (support_x - centre) / (support_x - centre).norm(dim=1, keepdim=True).clamp_min(1e-8)
        query_x = (query_x - centre) / (query_x - centre).norm(dim=1, keepdim=True).clamp_min(1e-8)
    predicted = squared_distance_logits(query_x, prototypes(support_x, support_y, len(classes))).argmax(1)
    accuracy = (predicted == query_y).float().mean().item()

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "true", "predicted"])
        for (path, _), true, pred in zip(query_folder.samples, query_y.tolist(), predicted.tolist()):
            writer.writerow([path, classes[true], classes[pred]])
    shots = [int((support_y == c).sum()) for c in range(len(classes))]
    summary = {
        "arch": args.arch, "pretrained": model.weights_loaded, "layer": args.layer, "normalised": not args.raw,
        "classes": classes, "shots": shots, "n_query": len(query), "acc": accuracy, "chance": 1 / len(classes),
    }
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"prototype accuracy {accuracy:.1%} on {len(query)} queries (chance {1 / len(classes):.1%}) "
          f"-> {args.out / 'predictions.csv'}")
    return summary


if __name__ == "__main__":
    main()
