"""Benchmark of chapter 1: the four fine-tuning strategies on the same data and budget.

Full mode: ResNet-50 (ImageNet weights) on Oxford-IIIT Pet at 224 px, AMP and channels_last on a GPU.
Reduced mode (``--reduced``): mini_resnet pretrained on shapes classes 10-19, fine-tuned on classes
0-9 at 32 px on the CPU, the same settings as the notebook.

Writes ``benchmarks/results/finetune_<mode>.json`` (accuracy, trainable parameters, seconds per
epoch, the resolved config, hardware, date, versions) and prints one summary line.

Usage:
    python benchmarks/finetune.py            # full mode
    TLH_REDUCED=1 python benchmarks/finetune.py --reduced
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader

from tlhelpers.finetune import STRATEGIES, results_table, run_strategy
from tlhelpers.finetune_data import load_finetune_data
from tlhelpers.preprocessing import image_transforms, stored_size, weights_preset
from tlhelpers.proxy_pretraining import proxy_pretrained_state, source_accuracy
from tlhelpers.runtime import get_device, loader_kwargs, seed_everything

FULL = {"arch": "resnet50", "image_size": 224, "num_epochs": 8, "batch_size": 64, "lr": 1e-3,
        "crop_scale": [0.35, 1.0], "n_per_class": None, "pretrain": None}
REDUCED = {"arch": "mini_resnet", "image_size": 32, "num_epochs": 8, "batch_size": 32, "lr": 2e-3,
           "crop_scale": [0.7, 1.0], "n_per_class": 100,
           "pretrain": {"n_per_class": 500, "num_epochs": 10, "lr": 3e-3}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="offline shapes, mini_resnet, CPU-sized")
    parser.add_argument("--arch", help="override the architecture")
    parser.add_argument("--num-epochs", type=int, help="override the epochs per strategy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/finetune_<mode>.json)")
    args = parser.parse_args()

    mode = "reduced" if args.reduced else "full"
    config = dict(REDUCED if args.reduced else FULL, seed=args.seed)
    config.update({k: v for k, v in (("arch", args.arch), ("num_epochs", args.num_epochs)) if v is not None})
    device = get_device(args.device)
    amp = device.type == "cuda"
    seed_everything(args.seed)
    start = time.perf_counter()

    size = config["image_size"]
    # the weights' own preprocessing (mini_resnet has none: ImageNet statistics at the shapes' size)
    preset = weights_preset(config["arch"], weights=None, image_size=size)
    config["eval_transform"] = " ".join(repr(preset).split())
    train, val, test = load_finetune_data(args.reduced, stored_size(preset), n_per_class=config["n_per_class"], seed=args.seed)
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

    results = [
        run_strategy(
            s, arch=config["arch"], num_classes=train.num_classes, train_loader=train_loader,
            val_loader=val_loader, test_loader=test_loader, num_epochs=config["num_epochs"], lr=config["lr"],
            weights=None if source_state is not None else "DEFAULT", source_state=source_state,
            seed=args.seed, device=device, amp=amp, channels_last=amp, progress=False,
        )
        for s in STRATEGIES
    ]
    report = {
        "benchmark": "finetune", "mode": mode, "config": config,
        "data": {"train": len(train), "val": len(val), "test": len(test), "num_classes": train.num_classes},
        "results": [r.to_dict() for r in results],
        "total_seconds": round(time.perf_counter() - start, 1),
        "hardware": {
            "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "python": platform.python_version()},
    }
    out = args.out or Path(__file__).resolve().parent / "results" / f"finetune_{mode}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out)
    print(results_table(results))
    summary = ", ".join(f"({r.strategy.key}) {100 * r.test_acc:.1f}%" for r in results)
    print(f"finetune [{mode}] {config['arch']} test acc: {summary}; {report['total_seconds']:.0f} s -> {out}")


if __name__ == "__main__":
    main()
