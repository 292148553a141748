"""Cached feature extraction vs the article's re-extraction every epoch, plus linear probes per layer.

Measures on chapter 1's split (shapes in reduced mode, Oxford-IIIT Pet in full mode), for ``--epochs``
epochs of the same linear head on the same features, with validation after every epoch:

1. *article's way* (section 4.2, with its crashes fixed): ``feature_extractor = vgg16.features``
   (frozen, eval mode, under ``torch.no_grad``), its output flattened (the article's 512x7x7 input at
   224 px), a plain training loop that runs the extractor on every training batch of every epoch,
   and an ``evaluate_classifier`` step that runs it again on every validation batch of every epoch.
2. *cached, cold*: :func:`tlhelpers.transfer.features.extract_features` once over train and validation into an
   empty cache (same layer ``pool5``, flattened), then :func:`tlhelpers.transfer.probe.train_linear_probe`.
3. *cached, warm*: the same with the cache already on disk (a rerun, another head or learning rate).

Why the cold ratio stays below 10x for 10 epochs: let E be one extraction pass (train + validation)
and h one epoch of head training on cached features. The article pays ``10E + 10h'`` (h' >= h, its
head step also waits for the data loader), the cold cached run ``E + 10h``, so the ratio is at most
``10E / E = 10`` and reaches it only when ``h`` is zero. The warm run pays ``load + 10h`` and has no
such bound: that is the ratio that grows with every rerun, and the one we report as the headline.

Before timing, one untimed warm-up builds an optimizer (torch imports its compiler stack on the
first one, about a second, once per process) and runs the extractor on one batch, so neither
pipeline is charged for one-time start-up costs.

It also trains linear probes (ours and scikit-learn's) on VGG16 ``conv4_3``/``conv5_3``/``fc7``,
ResNet-50 ``avgpool`` and, in reduced mode, the proxy-pretrained and random ``mini_resnet``
(see :mod:`tlhelpers.course.proxy_pretraining`), with accuracy, dimension and extraction time.

In reduced mode, ``transfer`` holds chapter 2's stand-in for VGG16, ``mini_vgg``
(:mod:`tlhelpers.models.mini_vgg`), proxy-pretrained on shapes 10-19 and at random init, probed at
``conv3_3`` ... ``fc7`` on the near and the far target (``load_finetune_data(target=...)``), for
``--seeds`` seeds (each seed draws its own pretraining, data, random init and probe), with the
notebook's sizes: per-seed rows, and mean and std per (target, weights, layer).

``--max-minutes``: the article's loop gets half of it and stops after the epoch that passes its
share; the cached runs then train as many epochs as it did (the comparison stays like for like);
the layer probes run model by model while time is left (the first model always runs). The JSON's
``budget`` records the epochs and probe models done and planned. Without Pets' files or the VGG16
and ResNet-50 weights (and no network) it prints ``skipped: <reason>`` and exits with status 3.
``TLH_SMOKE=1`` shrinks the full-mode counts (epochs, batch size, probe epochs and iterations).

Usage:
    python benchmarks/features.py [--reduced] [--epochs 10] [--seeds 0 1 2] [--data-root DIR] [--max-minutes M] [--out FILE]
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
import torch.nn.functional as F
from harness import Budget, add_run_arguments, output_path, run_or_skip
from torch import nn
from torch.utils.data import DataLoader

from tlhelpers.core.runtime import (
    count,
    get_device,
    is_reduced,
    loader_kwargs,
    mode_name,
    seed_everything,
)
from tlhelpers.course.finetune_data import load_finetune_data
from tlhelpers.course.proxy_pretraining import proxy_pretrained_state, source_accuracy
from tlhelpers.data.preprocessing import image_transforms, plain_preset, stored_size, weights_preset
from tlhelpers.models.backbones import build_classifier, load_backbone_state
from tlhelpers.training.engine import History
from tlhelpers.transfer.features import extract_features
from tlhelpers.transfer.probe import make_head, sklearn_probe, train_linear_probe
from tlhelpers.transfer.retrieval import precision_at_k

#: Chapter 1's proxy pretraining (its notebook and benchmark use it), so the cached weights are shared.
PROXY_PRETRAIN = {"n_per_class": 500, "num_epochs": 10, "lr": 3e-3}
#: Chapter 2's mini_vgg: its proxy pretraining, training (and test) images per class, and the layers probed.
VGG_PRETRAIN = {"n_per_class": 300, "num_epochs": 6, "lr": 1e-3}
TRANSFER_N_PER_CLASS = 30
TRANSFER_LAYERS = ("conv3_3", "conv4_3", "conv5_3", "fc6", "fc7")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def article_way(
    feature_extractor: nn.Module, classifier: nn.Module, train_loader: DataLoader, val_loader: DataLoader,
    num_epochs: int, lr: float, device: torch.device, time_limit: float | None = None,
) -> History:
    """The article's loop, fixed: the frozen extractor runs on every batch of every epoch.

    Returns the validation accuracy per epoch; stops after the epoch that passes ``time_limit`` seconds.
    """
    t0 = time.perf_counter()
    history = History(planned=num_epochs)
    feature_extractor.to(device).eval().requires_grad_(False)
    classifier.to(device)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=lr)
    for epoch in range(num_epochs):
        classifier.train()  # train_classifier(...)
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            with torch.no_grad():
                feats = feature_extractor(x).flatten(1)
            loss = F.cross_entropy(classifier(feats), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        classifier.eval()  # evaluate_classifier(...): the extractor runs over the validation set again
        correct = seen = 0
        with torch.no_grad():
            for x, y in val_loader:
                x, y = x.to(device), y.to(device)
                correct += int((classifier(feature_extractor(x).flatten(1)).argmax(1) == y).sum())
                seen += len(y)
        history.append({"epoch": epoch + 1, "val_acc": correct / seen})
        if time_limit is not None and epoch + 1 < num_epochs and time.perf_counter() - t0 >= time_limit:
            history.stopped_early = True
            break
    return history


def transfer_probes(
    seeds: list[int], image_size: int, batch_size: int, probe_epochs: int, sklearn_iters: int, device: torch.device,
) -> dict[str, object]:
    """mini_vgg proxy-pretrained vs random: linear probes per layer on the near and far targets, per seed."""
    rows = []
    transform = image_transforms(plain_preset(image_size), train=False)
    for seed in seeds:
        state = proxy_pretrained_state("mini_vgg", image_size, seed=seed, progress=False, **VGG_PRETRAIN)
        source_acc = source_accuracy(state, "mini_vgg", image_size, seed=seed)
        for target in ("near", "far"):
            train, _, test = load_finetune_data(True, image_size, target=target, n_per_class=TRANSFER_N_PER_CLASS,
                                                seed=seed, progress=False)
            loaders = [DataLoader(ds.with_transform(transform), batch_size=batch_size, shuffle=False) for ds in (train, test)]
            for weights in ("pretrained", "random"):
                torch.manual_seed(seed)
                model = build_classifier("mini_vgg", num_classes=train.num_classes, weights=None).model
                if weights == "pretrained":
                    load_backbone_state(model, state)
                (ftr, ytr), (fte, yte) = (extract_features(model.eval(), list(TRANSFER_LAYERS), loader, device=device,
                                                           model_name="mini_vgg", progress=False) for loader in loaders)
                for layer in TRANSFER_LAYERS:
                    ours = train_linear_probe(ftr[layer], ytr, fte[layer], yte, num_classes=train.num_classes,
                                              num_epochs=probe_epochs, seed=seed, device=device)
                    ref = sklearn_probe(ftr[layer], ytr, fte[layer], yte, C=0.1, max_iter=sklearn_iters)
                    rows.append({
                        "seed": seed, "target": target, "weights": weights, "layer": layer, "dim": int(ftr[layer].shape[1]),
                        "source_acc": round(source_acc, 4), "linear_probe_acc": round(ours.val_acc, 4),
                        "sklearn_acc": round(ref["acc"], 4), "precision_at_8": round(precision_at_k(fte[layer], yte, 8), 4),
                    })
    summary = []
    for target in ("near", "far"):
        for weights in ("pretrained", "random"):
            for layer in TRANSFER_LAYERS:
                accs = torch.tensor([r["linear_probe_acc"] for r in rows
                                     if (r["target"], r["weights"], r["layer"]) == (target, weights, layer)])
                summary.append({"target": target, "weights": weights, "layer": layer,
                                "linear_probe_acc_mean": round(accs.mean().item(), 4),
                                "linear_probe_acc_std": round(accs.std().item() if len(accs) > 1 else 0.0, 4),
                                "per_seed": [round(a, 4) for a in accs.tolist()]})
    return {"arch": "mini_vgg", "proxy_pretrain": VGG_PRETRAIN, "n_per_class": TRANSFER_N_PER_CLASS, "seeds": seeds,
            "image_size": image_size, "probe_epochs": probe_epochs, "rows": rows, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="offline shapes, small sizes (also set by TLH_REDUCED=1)")
    parser.add_argument("--epochs", type=int, default=None, help="head epochs (default 10)")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--n-per-class", type=int, default=40, help="reduced mode: train and test images per class")
    parser.add_argument("--batch-size", type=int, default=None, help="default 64")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="reduced mode: seeds of the mini_vgg pretrained-vs-random probes")
    add_run_arguments(parser, data_help="folder with oxford-iiit-pet/ (full mode; default TLH_DATA or data/)")
    args = parser.parse_args()
    budget = Budget(args.max_minutes)
    reduced = args.reduced or is_reduced()
    mode = "reduced" if reduced else mode_name()
    # counts of full mode shrink in a smoke run (TLH_SMOKE=1); reduced mode keeps its own
    args.epochs = args.epochs or (10 if reduced else count(10, 1))
    args.batch_size = args.batch_size or (64 if reduced else count(64, 4))
    probe_epochs, sklearn_iters = (30, 300) if reduced else (count(30, 1), count(300, 20))
    image_size = args.image_size or (32 if reduced else 224)
    device = get_device()
    seed_everything(0)

    # VGG16's own preprocessing in full mode; the generated shapes are drawn at the size itself
    preset = plain_preset(image_size) if reduced else weights_preset("vgg16", image_size=image_size)
    train_set, val_set, test_set = load_finetune_data(reduced, stored_size(preset), n_per_class=args.n_per_class,
                                                      root=args.data_root, progress=False)
    transform = image_transforms(preset, train=False)
    kw = loader_kwargs(device)
    ordered = {name: DataLoader(ds.with_transform(transform), batch_size=args.batch_size, shuffle=False, **kw)
               for name, ds in {"train": train_set, "val": val_set, "test": test_set}.items()}
    shuffled = DataLoader(train_set.with_transform(transform), batch_size=args.batch_size, shuffle=True, **kw)
    num_classes = train_set.num_classes
    built = build_classifier("vgg16", num_classes=1000)
    vgg = built.model.eval()
    with torch.no_grad():
        dim = vgg.features(next(iter(ordered["train"]))[0][:1]).numel()

    # Untimed warm-up of one-time costs (compiler-stack import in the first optimizer, lazy init).
    torch.optim.AdamW(make_head(dim, num_classes).parameters())
    with torch.no_grad():
        vgg.features.to(device)(next(iter(ordered["train"]))[0].to(device))

    # 1. The article's way, with half the budget; the cached runs then train as many epochs as it did.
    torch.manual_seed(0)
    limit = None if budget.left() is None else budget.left() / 2
    sync(device)
    t0 = time.perf_counter()
    article = article_way(vgg.features, make_head(dim, num_classes), shuffled, ordered["val"], args.epochs, args.lr,
                          device, time_limit=limit)
    sync(device)
    article_s = time.perf_counter() - t0
    article_acc, epochs = article["val_acc"][-1], len(article)

    # 2. and 3. Cached: extract train + val once into an empty cache (cold), then again from disk (warm).
    times, accs, parts = {}, {}, {}
    with tempfile.TemporaryDirectory() as cache_dir:
        for run in ("cold", "warm"):
            sync(device)
            t0 = time.perf_counter()
            (ftr, ytr), (fva, yva) = (
                extract_features(vgg, "pool5", ordered[s], cache_dir=cache_dir, device=device, model_name="vgg16",
                                 pool=False, progress=False) for s in ("train", "val"))
            sync(device)
            t1 = time.perf_counter()
            probe = train_linear_probe(ftr, ytr, fva, yva, num_classes=num_classes, num_epochs=epochs,
                                       lr=args.lr, batch_size=args.batch_size, device=device)
            sync(device)
            times[run] = time.perf_counter() - t0
            parts[run] = {"features": round(t1 - t0, 3), "head_training": round(time.perf_counter() - t1, 3)}
            accs[run] = probe.val_acc

    # Probes per layer, extraction timed per model (all its layers in one pass, train + test).
    models = [("vgg16", vgg, ["conv4_3", "conv5_3", "fc7"], built.weights_loaded)]
    resnet = build_classifier("resnet50", num_classes=1000)
    models.append(("resnet50", resnet.model.eval(), ["avgpool"], resnet.weights_loaded))
    if reduced:  # a genuinely pretrained stand-in next to the random-init torchvision models
        for pretrained in (True, False):
            torch.manual_seed(0)
            mini = build_classifier("mini_resnet", num_classes=10, weights=None).model
            if pretrained:
                load_backbone_state(mini, proxy_pretrained_state("mini_resnet", image_size, progress=False, **PROXY_PRETRAIN))
            models.append(("mini_resnet" + ("" if pretrained else " (random)"), mini.eval(), ["layer3", "avgpool"], pretrained))
    probes, models_done = [], 0
    for name, model, layers, weights_loaded in models:
        if models_done and budget.spent():
            break
        models_done += 1
        arch = name.split()[0]
        sync(device)
        t0 = time.perf_counter()
        ftr, ytr = extract_features(model, layers, ordered["train"], device=device, model_name=arch, progress=False)
        fte, yte = extract_features(model, layers, ordered["test"], device=device, model_name=arch, progress=False)
        sync(device)
        extract_s = time.perf_counter() - t0
        for layer in layers:
            ours = train_linear_probe(ftr[layer], ytr, fte[layer], yte, num_classes=num_classes, num_epochs=probe_epochs,
                                      device=device)
            ref = sklearn_probe(ftr[layer], ytr, fte[layer], yte, C=0.1, max_iter=sklearn_iters)
            probes.append({
                "model": name, "layer": layer, "pretrained": weights_loaded, "dim": int(ftr[layer].shape[1]),
                "extract_seconds_model": round(extract_s, 3),
                "linear_probe_acc": round(ours.val_acc, 4), "linear_probe_seconds": round(ours.seconds, 3),
                "sklearn_acc": round(ref["acc"], 4), "sklearn_seconds": round(ref["seconds"], 3),
            })

    transfer = None
    if reduced and not budget.spent():
        transfer = transfer_probes(args.seeds, image_size, args.batch_size, probe_epochs, sklearn_iters, device)

    speedup = {"cold": round(article_s / times["cold"], 2), "warm": round(article_s / times["warm"], 2)}
    # The bound assumes the article's epoch costs one extraction pass plus one head epoch; we measure both.
    extract_pass, head_s = parts["cold"]["features"], parts["cold"]["head_training"]
    bound = round((epochs * extract_pass + head_s) / (extract_pass + head_s), 2)
    article_epoch = article_s / epochs
    result = {
        "benchmark": "features", "mode": mode,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "image_size": image_size,
                   "train_images": len(train_set), "val_images": len(val_set), "test_images": len(test_set),
                   "num_classes": num_classes, "weights_loaded": built.weights_loaded,
                   "proxy_pretrain": PROXY_PRETRAIN if reduced else None,
                   "probe_epochs": probe_epochs, "sklearn_max_iter": sklearn_iters,
                   "layer": "pool5 flattened (vgg16.features, the article's extractor)", "head": f"linear {dim}->classes"},
        "hardware": {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                     "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                     "python": platform.python_version(), "torch": torch.__version__},
        "seconds": {"article_reextract_every_epoch": round(article_s, 3), "cached_cold": round(times["cold"], 3),
                    "cached_warm": round(times["warm"], 3)},
        "seconds_parts": parts,
        "val_acc": {"article": round(article_acc, 4), "cached_cold": round(accs["cold"], 4), "cached_warm": round(accs["warm"], 4)},
        "speedup": speedup,
        "budget": {**budget.record(article, limit), "probe_models_done": models_done, "probe_models_planned": len(models),
                   "transfer_done": transfer is not None},
        "note": (
            f"Both pipelines train the same linear head for {epochs} epochs with validation every epoch. "
            f"The cold ratio is bounded: with E one extraction pass (train + val) and h one head epoch, "
            f"article / cold = ({epochs}E + {epochs}h) / (E + {epochs}h) < {epochs}. "
            f"Measured: E = {extract_pass:.2f}s (our extraction pass), {epochs}h = {head_s:.2f}s, so the bound "
            f"is {bound}x; the article's loop took {article_epoch:.2f}s per epoch (its pass under no_grad on a "
            f"shuffled loader, plus the head step, on a shared CPU), so a measured cold ratio near or slightly above "
            f"{epochs}x reflects that per-epoch difference and timing noise, not a free head. The warm ratio "
            f"(cache on disk: every rerun, other heads, other learning rates) has no such bound and is the one that "
            f"meets the >= 10x target; the first run must pay one extraction, the floor for any method that needs the features."
        ),
        "probes": probes,
        "transfer": transfer,
    }
    out = output_path(args, f"features_{mode}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    best = max(probes, key=lambda p: p["linear_probe_acc"])
    print(
        f"features[{mode}] {epochs} epochs: article's way {article_s:.1f}s, cached cold {times['cold']:.2f}s "
        f"({speedup['cold']:.1f}x; bound with equal passes {bound:.1f}x, article epoch {article_epoch:.2f}s vs "
        f"extraction pass {extract_pass:.2f}s), warm {times['warm']:.2f}s ({speedup['warm']:.0f}x); "
        f"head training {parts['warm']['head_training']:.2f}s; best probe {best['model']}:{best['layer']} "
        f"{best['linear_probe_acc']:.3f} -> {out}"
    )


if __name__ == "__main__":
    raise SystemExit(run_or_skip(main))
