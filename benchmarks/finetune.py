"""Benchmark of chapter 1: the four fine-tuning strategies on the same data and budget.

Full mode: ResNet-50 (ImageNet weights) on Oxford-IIIT Pet at 224 px, AMP on a GPU; channels_last in both modes.
Reduced mode (``--reduced``): mini_resnet pretrained on shapes classes 10-19, fine-tuned on classes
0-9 at 32 px on the CPU, the same settings as the notebook, on both targets (``near``: drawn like
the pretraining images; ``far``: fine 2-3 px textures) and every seed of ``--seeds`` (0 1 2); the
JSON holds each target's per-seed accuracies and their mean and std. Its top-level ``results`` are
the near target's, averaged over the seeds (what the README's results table reads).

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
    TLH_REDUCED=1 python benchmarks/finetune.py --reduced            # both targets, seeds 0 1 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time

import torch
import torchvision
from harness import Budget, add_run_arguments, output_path, run_or_skip
from torch.utils.data import DataLoader

from tlhelpers.core.runtime import count, get_device, loader_kwargs, seed_everything
from tlhelpers.course.finetune_data import load_finetune_data
from tlhelpers.course.proxy_pretraining import proxy_pretrained_state, source_accuracy
from tlhelpers.data.preprocessing import image_transforms, stored_size, weights_preset
from tlhelpers.transfer.finetuning import STRATEGIES, results_table, run_strategy


def full_config() -> dict:
    """Full mode: ResNet-50 on Pets at 224 px; counts shrink in a smoke run (``TLH_SMOKE=1``)."""
    return {"arch": "resnet50", "image_size": 224, "num_epochs": count(8, 1), "batch_size": count(64, 4),
            "steps_per_epoch": count(None, 2), "lr": 1e-3, "crop_scale": [0.35, 1.0], "n_per_class": None,
            "pretrain": None}


REDUCED = {"arch": "mini_resnet", "image_size": 32, "num_epochs": 4, "batch_size": 32, "lr": 2e-3,
           "crop_scale": [0.7, 1.0], "n_per_class": 100, "steps_per_epoch": None,
           "pretrain": {"n_per_class": 500, "num_epochs": 10, "lr": 3e-3}}


def run_target(config: dict, args: argparse.Namespace, target: str, seed: int, budget: Budget, runs_left: int,
               device: torch.device) -> tuple[list, list, dict]:
    """The four strategies on one target and seed: results, budget records and data sizes."""
    amp = device.type == "cuda"
    size = config["image_size"]
    # the weights' own preprocessing (mini_resnet has none: ImageNet statistics at the shapes' size)
    preset = weights_preset(config["arch"], weights=None, image_size=size)
    config["eval_transform"] = " ".join(repr(preset).split())
    train, val, test = load_finetune_data(args.reduced, stored_size(preset), target=target, n_per_class=config["n_per_class"],
                                          root=args.data_root, seed=seed, progress=False)
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
        source_state = proxy_pretrained_state(config["arch"], size, seed=seed, progress=False, **config["pretrain"])
        # the first target of a seed pays for the pretraining; later targets read it from the cache
        config.setdefault("pretrain_seconds", {}).setdefault(str(seed), round(time.perf_counter() - t0, 1))
        config.setdefault("pretrain_source_test_acc", {})[str(seed)] = source_accuracy(source_state, config["arch"], size, seed=seed)
    results, budgets = [], []
    for i, strategy in enumerate(STRATEGIES):
        limit = budget.share(runs_left - i)
        results.append(run_strategy(
            strategy, arch=config["arch"], num_classes=train.num_classes, train_loader=train_loader,
            val_loader=val_loader, test_loader=test_loader, num_epochs=config["num_epochs"], lr=config["lr"],
            weights=None if source_state is not None else "DEFAULT", source_state=source_state,
            seed=seed, device=device, amp=amp, channels_last=True, progress=False, time_limit=limit,
            steps_per_epoch=config["steps_per_epoch"],
        ))
        budgets.append(budget.record(results[-1].history, limit))
    data = {"train": len(train), "val": len(val), "test": len(test), "num_classes": train.num_classes}
    return results, budgets, data


def summarise(per_seed: dict[int, list], seeds: list[int]) -> list[dict]:
    """Per strategy: test accuracy per seed, mean and (sample) std over the seeds."""
    rows = []
    for i, strategy in enumerate(STRATEGIES):
        accs = [per_seed[s][i].test_acc for s in seeds]
        rows.append({"key": strategy.key, "name": strategy.name, "test_acc_per_seed": dict(zip(map(str, seeds), accs)),
                     "test_acc_mean": statistics.mean(accs), "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="offline shapes, mini_resnet, CPU-sized")
    parser.add_argument("--arch", help="override the architecture")
    parser.add_argument("--num-epochs", type=int, help="override the epochs per strategy")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="seeds of data, pretraining and init (default: 0 1 2 in reduced mode, 0 in full mode)")
    parser.add_argument("--targets", nargs="+", choices=("near", "far"), default=None,
                        help="reduced mode: which targets (default both); full mode has only near (Pets)")
    parser.add_argument("--device", default=None)
    add_run_arguments(parser, data_help="folder with oxford-iiit-pet/ (full mode; default TLH_DATA or data/)")
    args = parser.parse_args()

    budget = Budget(args.max_minutes)
    mode = "reduced" if args.reduced else "full"
    seeds = args.seeds or ([0, 1, 2] if args.reduced else [0])
    targets = args.targets or (["near", "far"] if args.reduced else ["near"])
    config = dict(REDUCED if args.reduced else full_config(), seeds=seeds, targets=targets, max_minutes=args.max_minutes)
    config.update({k: v for k, v in (("arch", args.arch), ("num_epochs", args.num_epochs)) if v is not None})
    device = get_device(args.device)
    start = time.perf_counter()

    runs_total = len(seeds) * len(targets) * len(STRATEGIES)
    per_target: dict[str, dict] = {}
    first_results = None
    for t_index, target in enumerate(targets):
        per_seed, budgets, data = {}, {}, {}
        for s_index, seed in enumerate(seeds):
            seed_everything(seed)
            done = (t_index * len(seeds) + s_index) * len(STRATEGIES)
            per_seed[seed], budgets[str(seed)], data = run_target(config, args, target, seed, budget, runs_total - done, device)
            first_results = first_results or per_seed[seed]
            print(f"finetune [{mode}] {target} seed {seed}: "
                  + ", ".join(f"({r.strategy.key}) {100 * r.test_acc:.1f}%" for r in per_seed[seed]), flush=True)
        per_target[target] = {"data": data, "strategies": summarise(per_seed, seeds), "budget": budgets,
                              "runs": {str(s): [r.to_dict() for r in rs] for s, rs in per_seed.items()}}
    main_target = per_target[targets[0]]
    # the README's table reads "results": the first target's strategies, mean over the seeds
    results = [{**run, "test_acc": row["test_acc_mean"], "test_acc_std": row["test_acc_std"]}
               for run, row in zip(main_target["runs"][str(seeds[0])], main_target["strategies"])]
    report = {
        "benchmark": "finetune", "mode": mode, "config": config, "data": main_target["data"],
        "results": results, "targets": per_target,
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
    print(results_table(first_results))
    for target, d in per_target.items():
        line = ", ".join(f"({r['key']}) {100 * r['test_acc_mean']:.1f} ± {100 * r['test_acc_std']:.1f}%" for r in d["strategies"])
        print(f"finetune [{mode}] {config['arch']} {target}, {len(seeds)} seed(s): {line}")
    stopped = sum(b["stopped_early"] for d in per_target.values() for bs in d["budget"].values() for b in bs)
    note = f"; {stopped} of {runs_total} stopped early by --max-minutes" if stopped else ""
    print(f"finetune [{mode}] {report['total_seconds']:.0f} s{note} -> {out}")


if __name__ == "__main__":
    raise SystemExit(run_or_skip(main))
