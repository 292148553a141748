"""Benchmark of chapter 1: the four fine-tuning strategies on the same data and budget.

Full mode: ResNet-50 (ImageNet weights) on Oxford-IIIT Pet at 224 px, AMP and channels_last on a GPU.
Reduced mode (``--reduced``): mini_resnet pretrained on shapes classes 10-19, fine-tuned on classes
0-9 at 32 px on the CPU, the same settings as the notebook.

Writes ``benchmarks/results/finetune_<mode>.json`` (accuracy, trainable parameters, seconds per
epoch, the resolved config, hardware, date, versions) and prints one summary line.

``--max-minutes`` is split among the four strategies: each gets the time left divided by the
strategies left (so time a fast one leaves goes to the next) and stops after the epoch that passes
it; each result records its ``budget`` (epochs done and planned). The budget clock starts with the
script, so loading (and, in reduced mode, the proxy pretraining) counts against the first share.
Without Pets' files or ResNet-50's weights (and no network) it prints ``skipped: <reason>`` and
exits with status 3. ``TLH_SMOKE=1`` shrinks the full-mode counts (epochs, batch size, steps).

Usage:
    python benchmarks/finetune.py --data-root data --max-minutes 60   # full mode
    TLH_REDUCED=1 python benchmarks/finetune.py --reduced
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time

import torch
import torchvision
from harness import Budget, add_run_arguments, output_path, run_or_skip
from torch.utils.data import DataLoader

from tlhelpers.finetune import STRATEGIES, results_table, run_strategy
from tlhelpers.finetune_data import load_finetune_data
from tlhelpers.preprocessing import image_transforms, stored_size, weights_preset
from tlhelpers.proxy_pretraining import proxy_pretrained_state, source_accuracy
from tlhelpers.runtime import count, get_device, loader_kwargs, seed_everything


def full_config() -> dict:
    """Full mode: ResNet-50 on Pets at 224 px; counts shrink in a smoke run (``TLH_SMOKE=1``)."""
    return {"arch": "resnet50", "image_size": 224, "num_epochs": count(8, 1), "batch_size": count(64, 4),
            "steps_per_epoch": count(None, 2), "lr": 1e-3, "crop_scale": [0.35, 1.0], "n_per_class": None,
            "pretrain": None}


REDUCED = {"arch": "mini_resnet", "image_size": 32, "num_epochs": 8, "batch_size": 32, "lr": 2e-3,
           "crop_scale": [0.7, 1.0], "n_per_class": 100, "steps_per_epoch": None,
           "pretrain": {"n_per_class": 500, "num_epochs": 10, "lr": 3e-3}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="offline shapes, mini_resnet, CPU-sized")
    parser.add_argument("--arch", help="override the architecture")
    parser.add_argument("--num-epochs", type=int, help="override the epochs per strategy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    add_run_arguments(parser, data_help="folder with oxford-iiit-pet/ (full mode; default TLH_DATA or data/)")
    args = parser.parse_args()

    budget = Budget(args.max_minutes)
    mode = "reduced" if args.reduced else "full"
    config = dict(REDUCED if args.reduced else full_config(), seed=args.seed, max_minutes=args.max_minutes)
    config.update({k: v for k, v in (("arch", args.arch), ("num_epochs", args.num_epochs)) if v is not None})
    device = get_device(args.device)
    amp = device.type == "cuda"
    seed_everything(args.seed)
    start = time.perf_counter()

    size = config["image_size"]
    # the weights' own preprocessing (mini_resnet has none: ImageNet statistics at the shapes' size)
    preset = weights_preset(config["arch"], weights=None, image_size=size)
    config["eval_transform"] = " ".join(repr(preset).split())
    train, val, test = load_finetune_data(args.reduced, stored_size(preset), n_per_class=config["n_per_class"],
                                          root=args.data_root, seed=args.seed, progress=False)
    eval_tf = image_transforms(preset, train=False)
    train_tf = image_transforms(preset, train=True, crop_scale=tuple(config["crop_scale"]))
    kw = loader_kwargs(device)
    bs = config["batch_size"]
    train_loader = DataLoader(train.with_transform(train_tf), batch_size=bs, shuffle=True, drop_last=True, **kw)
    val_loader = DataLoader(val.with_transform(eval_tf), batch_size=2 * bs, **kw)
    test_loader = DataLoader(test.with_transform(eval_tf), batch_size=2 * bs, **kw)
    source_state = None
    if config["pretrain"] is not None:
        t0 = time.perf_counter()
        source_state = proxy_pretrained_state(config["arch"], size, seed=args.seed, progress=False, **config["pretrain"])
        config["pretrain_seconds"] = round(time.perf_counter() - t0, 1)
        config["pretrain_source_test_acc"] = source_accuracy(source_state, config["arch"], size, seed=args.seed)

    results, budgets = [], []
    for i, strategy in enumerate(STRATEGIES):
        limit = budget.share(len(STRATEGIES) - i)
        results.append(run_strategy(
            strategy, arch=config["arch"], num_classes=train.num_classes, train_loader=train_loader,
            val_loader=val_loader, test_loader=test_loader, num_epochs=config["num_epochs"], lr=config["lr"],
            weights=None if source_state is not None else "DEFAULT", source_state=source_state,
            seed=args.seed, device=device, amp=amp, channels_last=amp, progress=False, time_limit=limit,
            steps_per_epoch=config["steps_per_epoch"],
        ))
        budgets.append(budget.record(results[-1].history, limit))
    report = {
        "benchmark": "finetune", "mode": mode, "config": config,
        "data": {"train": len(train), "val": len(val), "test": len(test), "num_classes": train.num_classes},
        "results": [{**r.to_dict(), "budget": b} for r, b in zip(results, budgets)],
        "total_seconds": round(time.perf_counter() - start, 1),
        "hardware": {
            "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "python": platform.python_version()},
    }
    out = output_path(args, f"finetune_{mode}.json")
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out)
    print(results_table(results))
    summary = ", ".join(f"({r.strategy.key}) {100 * r.test_acc:.1f}%" for r in results)
    stopped = sum(b["stopped_early"] for b in budgets)
    note = f"; {stopped} of {len(budgets)} stopped early by --max-minutes" if stopped else ""
    print(f"finetune [{mode}] {config['arch']} test acc: {summary}; {report['total_seconds']:.0f} s{note} -> {out}")


if __name__ == "__main__":
    raise SystemExit(run_or_skip(main))
