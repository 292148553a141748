"""Cached feature extraction vs re-extracting every epoch, plus linear probes per layer.

Measures on chapter 1's split (shapes in reduced mode, Oxford-IIIT Pet in full mode):

1. *re-extract*: the article's way done as well as it can be: every batch of every epoch runs the frozen
   VGG16 (eval mode, no autograd) up to ``fc7``, then one training step of a linear head.
2. *cached, cold*: one extraction pass over the training set into an empty cache, then the same head
   trained for the same epochs on the cached features.
3. *cached, warm*: the same with the cache already on disk (a rerun, or a second probe).

It also trains a linear probe (ours and scikit-learn's) on VGG16 ``conv4_3``/``conv5_3``/``fc7`` and
ResNet-50 ``avgpool`` and records accuracy, dimension and extraction time.

Usage:
    python benchmarks/features.py [--reduced] [--epochs 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.models.feature_extraction import create_feature_extractor

from tlhelpers.backbones import build_classifier
from tlhelpers.engine import fit
from tlhelpers.features import extract_features, resolve_layer
from tlhelpers.finetune_data import image_transforms, load_finetune_data
from tlhelpers.probe import FeatureLoader, make_head, sklearn_probe, train_linear_probe
from tlhelpers.runtime import get_device, is_reduced, loader_kwargs, mode_name, seed_everything


class ReExtractHead(nn.Module):
    """A head that runs the frozen backbone on raw images in every forward (the article's way)."""

    def __init__(self, extractor: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor.requires_grad_(False)
        self.head = head

    def train(self, mode: bool = True) -> ReExtractHead:
        super().train(mode)
        self.extractor.eval()  # a frozen backbone keeps dropout off
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats = self.extractor(x)["fc7"].float()
        return self.head(feats)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="offline shapes, small sizes (also set by TLH_REDUCED=1)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--n-per-class", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    reduced = args.reduced or is_reduced()
    mode = "reduced" if reduced else mode_name()
    image_size = args.image_size or (32 if reduced else 224)
    device = get_device()
    seed_everything(0)

    train_set, _, test_set = load_finetune_data(reduced, image_size, n_per_class=args.n_per_class, progress=False)
    transform = image_transforms(image_size, train=False)
    kw = loader_kwargs(device)
    train_loader = DataLoader(train_set.with_transform(transform), batch_size=args.batch_size, shuffle=False, **kw)
    test_loader = DataLoader(test_set.with_transform(transform), batch_size=args.batch_size, shuffle=False, **kw)
    num_classes = train_set.num_classes
    built = build_classifier("vgg16", num_classes=1000)
    vgg = built.model.eval()

    # 1. Re-extract every epoch: the frozen network runs inside every training step.
    torch.manual_seed(0)
    extractor = create_feature_extractor(vgg, {resolve_layer(vgg, "fc7", "vgg16"): "fc7"})
    shuffled = DataLoader(train_set.with_transform(transform), batch_size=args.batch_size, shuffle=True, **kw)
    sync(device)
    t0 = time.perf_counter()
    fit(ReExtractHead(extractor, make_head(4096, num_classes)), shuffled, args.epochs, lr=args.lr, device=device, progress=False)
    sync(device)
    reextract_s = time.perf_counter() - t0

    # 2. and 3. Cached: extract once (cold), train the same head; then again with the cache on disk (warm).
    times = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        for run in ("cold", "warm"):
            sync(device)
            t0 = time.perf_counter()
            feats, labels = extract_features(vgg, "fc7", train_loader, cache_dir=cache_dir, device=device, model_name="vgg16", progress=False)
            torch.manual_seed(0)
            fit(make_head(4096, num_classes), FeatureLoader(feats, labels, args.batch_size, shuffle=True), args.epochs,
                lr=args.lr, device=device, progress=False)
            sync(device)
            times[run] = time.perf_counter() - t0

    # Probes per layer, extraction timed per model (all its layers in one pass, train + test).
    probes = []
    for name, layers in (("vgg16", ["conv4_3", "conv5_3", "fc7"]), ("resnet50", ["avgpool"])):
        model = vgg if name == "vgg16" else build_classifier(name, num_classes=1000).model.eval()
        sync(device)
        t0 = time.perf_counter()
        ftr, ytr = extract_features(model, layers, train_loader, device=device, model_name=name, progress=False)
        fte, yte = extract_features(model, layers, test_loader, device=device, model_name=name, progress=False)
        sync(device)
        extract_s = time.perf_counter() - t0
        for layer in layers:
            ours = train_linear_probe(ftr[layer], ytr, fte[layer], yte, num_classes=num_classes, num_epochs=30, device=device)
            ref = sklearn_probe(ftr[layer], ytr, fte[layer], yte, C=0.1, max_iter=300)
            probes.append({
                "model": name, "layer": layer, "dim": int(ftr[layer].shape[1]), "extract_seconds_model": round(extract_s, 3),
                "linear_probe_acc": round(ours.val_acc, 4), "linear_probe_seconds": round(ours.seconds, 3),
                "sklearn_acc": round(ref["acc"], 4), "sklearn_seconds": round(ref["seconds"], 3),
            })

    result = {
        "benchmark": "features", "mode": mode,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "image_size": image_size,
                   "train_images": len(train_set), "test_images": len(test_set), "num_classes": num_classes,
                   "weights_loaded": built.weights_loaded, "layer": "fc7", "head": "linear 4096->classes"},
        "hardware": {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                     "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                     "python": platform.python_version(), "torch": torch.__version__},
        "seconds": {"reextract_every_epoch": round(reextract_s, 3), "cached_cold": round(times["cold"], 3),
                    "cached_warm": round(times["warm"], 3)},
        "speedup": {"cold": round(reextract_s / times["cold"], 2), "warm": round(reextract_s / times["warm"], 2)},
        "probes": probes,
    }
    out = args.out or Path(__file__).parent / "results" / f"features_{mode}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    best = max(probes, key=lambda p: p["linear_probe_acc"])
    print(
        f"features[{mode}] {args.epochs} epochs: re-extract {reextract_s:.1f}s, cached cold {times['cold']:.1f}s "
        f"({result['speedup']['cold']:.1f}x), warm {times['warm']:.2f}s ({result['speedup']['warm']:.0f}x); "
        f"best probe {best['model']}:{best['layer']} {best['linear_probe_acc']:.3f} -> {out}"
    )


if __name__ == "__main__":
    main()
