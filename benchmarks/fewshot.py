"""Few-shot benchmark: train one method, evaluate it over test episodes, time MAML vmap vs loop.

Reduced mode (``--reduced``) runs offline on the Omniglot subset packaged with ``tlhelpers``
(``omniglot-small1``: 136 real characters of 5 alphabets): 96 characters train, the other 40 are
held out for test, and every character's 90/180/270-degree rotations are extra classes on its own
side (384 training and 160 test classes). It is *not* the paper protocol (1200 of 1623
characters), so its rows say which data they ran on. Every method is scored on the same 600 test
episodes (seed 1, 15 queries per class), together with a nearest-class-mean baseline on raw
pixels; the JSON records a fingerprint of those episodes. Training in reduced mode stops after
``--max-minutes`` (default 4), so a method takes at most about 5 minutes with its evaluation.

Examples:
    python benchmarks/fewshot.py --reduced --method protonet --way 5 --shot 1
    python benchmarks/fewshot.py --data-root data --method maml --way 5 --shot 1 --max-minutes 30
    python benchmarks/fewshot.py --omniglot-folder /tmp/omniglot_small --method protonet

Full mode reads Omniglot in torchvision's layout under ``--data-root``
(``omniglot-py/images_background`` and ``images_evaluation``; default ``TLH_DATA`` or ``data/``),
downloading only what is missing (never with ``--no-download``); ``--omniglot-folder`` reads an
extracted ``alphabet/character/*.png`` tree instead (any Omniglot subset). Classes are split into
training and test characters by the standard protocol (1200 of 1623, or the same share of a
subset) with 90-degree rotations. Without the files (and no network) the script prints
``skipped: <reason>`` and exits with status 3.

``--max-minutes`` bounds training: meta-training stops after the iteration (the linear baseline
after the epoch) that passes the budget left once the data is loaded, and the JSON's
``training.budget`` records the iterations done and planned. The test episodes (a fixed protocol)
and the vmap timing run after it, outside the budget. ``TLH_SMOKE=1`` shrinks the full-mode counts
(iterations, meta-batch, episodes, queries, timing tasks and repeats, epochs).
Results go to ``benchmarks/results/fewshot_<method>_<dataset>_<way>w<shot>s_<mode>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fewshot_speed import cpu_name  # noqa: E402
from harness import Budget, add_run_arguments, output_path, run_or_skip  # noqa: E402

from tlhelpers.core.runtime import count, get_device, seed_everything  # noqa: E402
from tlhelpers.data.omniglot import load_character_folder, load_omniglot, omniglot_protocol  # noqa: E402
from tlhelpers.fewshot.baseline import linear_probe_predict, pixel_predict  # noqa: E402
from tlhelpers.fewshot.evaluation import episode_fingerprint, evaluate_episodes  # noqa: E402
from tlhelpers.fewshot.maml import maml_predict, maml_step, meta_gradient, meta_gradient_autograd  # noqa: E402
from tlhelpers.fewshot.protomaml import protomaml_predict, protomaml_step  # noqa: E402
from tlhelpers.fewshot.protonet import protonet_predict, protonet_step  # noqa: E402
from tlhelpers.fewshot.reptile import reptile_predict, reptile_step  # noqa: E402
from tlhelpers.fewshot.sampler import EpisodeSampler  # noqa: E402
from tlhelpers.fewshot.training import meta_train  # noqa: E402
from tlhelpers.models.conv4 import Conv4  # noqa: E402

METHODS = ("protonet", "maml", "fomaml", "protomaml", "reptile", "linear")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="omniglot", choices=["omniglot"])
    p.add_argument("--omniglot-folder", default=None,
                   help="an extracted alphabet/character/*.png tree to read instead of <data root>/omniglot-py")
    p.add_argument("--no-download", action="store_true", help="skip instead of downloading missing files")
    p.add_argument("--method", default="protonet", choices=METHODS)
    p.add_argument("--way", type=int, default=5, help="n_way at test")
    p.add_argument("--shot", type=int, default=1, help="k_shot at test")
    p.add_argument("--query", type=int, default=None, help="test queries per class (default 15)")
    p.add_argument("--train-query", type=int, default=None, help="queries per class in training episodes")
    p.add_argument("--train-characters", type=int, default=None,
                   help="characters for training (reduced: 96 of 136; full: the standard share, 1200 of 1623)")
    p.add_argument("--reduced", action="store_true", help="offline: the packaged Omniglot subset, small sizes")
    p.add_argument("--iterations", type=int, default=None, help="meta-training iterations (training budget)")
    p.add_argument("--train-way", type=int, default=None, help="n_way of training episodes (ProtoNet: 60 in the paper)")
    p.add_argument("--meta-batch", type=int, default=None, help="tasks per meta-batch (MAML/Reptile)")
    p.add_argument("--lr", type=float, default=None, help="outer learning rate (default 1e-3; reduced MAML/FOMAML 3e-3)")
    p.add_argument("--inner-lr", type=float, default=None)
    p.add_argument("--inner-steps", type=int, default=None, help="training inner steps")
    p.add_argument("--test-inner-steps", type=int, default=None)
    p.add_argument("--hidden", type=int, default=64, help="Conv-4 width")
    p.add_argument("--episodes", type=int, default=None, help="test episodes (default 600)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the linear baseline's classifier")
    p.add_argument("--timing-tasks", type=int, default=None, help="meta-batch size for the vmap-vs-loop timing")
    p.add_argument("--timing-repeats", type=int, default=None, help="default 5")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    add_run_arguments(p, data_help="folder with omniglot-py/ in torchvision's layout (default TLH_DATA or data/)")
    return p.parse_args(argv)


def load_data(args: argparse.Namespace):
    """``(characters, data description, (train, test))`` of the run."""
    if args.reduced:
        from tlhelpers.data.omniglot import load_omniglot_small

        characters = load_omniglot_small(image_size=28, progress=False)
        name = f"omniglot-small1, offline, {args.train_characters} train / {characters.num_classes - args.train_characters} test chars"
        return characters, name, omniglot_protocol(characters, n_train_classes=args.train_characters, seed=args.seed)
    if args.omniglot_folder is not None:
        characters = load_character_folder(args.omniglot_folder, image_size=28, progress=False)
        name = f"omniglot-folder:{Path(args.omniglot_folder).name}"
        return characters, name, omniglot_protocol(characters, n_train_classes=args.train_characters, seed=args.seed)
    characters = load_omniglot(args.data_root, image_size=28, download=not args.no_download, progress=False)
    return characters, "omniglot", omniglot_protocol(characters, n_train_classes=args.train_characters, seed=args.seed)


def time_meta_gradient(model, sampler, tasks, inner_lr, inner_steps, repeats, device) -> dict[str, float]:
    """Seconds per meta-batch: functional+vmap, functional loop, plain autograd loop (median)."""
    batch = sampler.sample_batch(tasks, torch.Generator().manual_seed(123)).to(device)
    kw = dict(inner_lr=inner_lr, inner_steps=inner_steps)
    fns = {
        "vmap": lambda: meta_gradient(model, batch, vectorize=True, **kw),
        "functional_loop": lambda: meta_gradient(model, batch, vectorize=False, **kw),
        "autograd_loop": lambda: meta_gradient_autograd(model, batch, **kw),
    }
    out, grads = {}, {}
    for name, fn in fns.items():
        grads[name] = fn()[0]  # warm-up
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        out[f"{name}_s"] = sorted(times)[len(times) // 2]
    ref = grads["autograd_loop"]
    norm = torch.sqrt(sum(r.pow(2).sum() for r in ref.values()))
    out["vmap_rel_diff"] = float(torch.sqrt(sum((grads["vmap"][k] - ref[k]).pow(2).sum() for k in ref)) / norm)
    out["ratio_vmap_over_autograd_loop"] = out["vmap_s"] / out["autograd_loop_s"]
    out["tasks"] = tasks
    return out


# Reduced mode's settings (per method); full mode's follow the papers and shrink in a smoke run.
REDUCED = {
    "protonet": {"iterations": 800, "train_way": 20, "train_query": 5},
    "maml": {"iterations": 300, "meta_batch": 4, "lr": 3e-3},
    "fomaml": {"iterations": 600, "meta_batch": 4, "lr": 3e-3},
    "protomaml": {"iterations": 300, "meta_batch": 4, "lr": 3e-3},
    "reptile": {"iterations": 400, "meta_batch": 4},
    "linear": {"epochs": 6},
}


def resolve(args: argparse.Namespace) -> None:
    """Fill every option left at None with the mode's and the method's default, in place."""
    is_maml = args.method in ("maml", "fomaml")
    if args.reduced:
        defaults = {
            "train_characters": 96, "max_minutes": 4.0, "iterations": 0, "train_way": args.way, "meta_batch": 1,
            "train_query": 5, "epochs": 0, "timing_tasks": 4, "timing_repeats": 5, "episodes": 600, "query": 15,
            **REDUCED[args.method],
        }
        args.hidden = min(args.hidden, 32)
    else:
        defaults = {
            "iterations": count(5000, 2) if args.method != "linear" else 0,
            "train_way": 20 if args.method == "protonet" else args.way,
            "meta_batch": count(32, 2) if args.method != "protonet" else 1,
            "epochs": count(10, 1) if args.method == "linear" else 0,
            "timing_tasks": count(32, 2), "timing_repeats": count(5, 1),
            "episodes": count(600, 2), "query": count(15, 2),
        }
    # ProtoMAML adapts the backbone and a prototype-initialised head: a smaller inner step than MAML's 0.4
    inner_lr = 0.4 if is_maml else 0.1 if args.method == "protomaml" else 1e-3
    maml_family = is_maml or args.method == "protomaml"
    defaults = {"lr": 1e-3, "inner_lr": inner_lr, "inner_steps": 1 if maml_family else 5,
                "test_inner_steps": 3 if maml_family else 10, **defaults}
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.train_query is None:
        args.train_query = min(args.query, 20 - args.shot)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    resolve(args)
    budget = Budget(args.max_minutes)
    seed_everything(args.seed)
    device = get_device(args.device)
    mode = "reduced" if args.reduced else "full"
    characters, data_name, (train_set, test_set) = load_data(args)
    is_maml = args.method in ("maml", "fomaml")
    train_sampler = EpisodeSampler(train_set, n_way=args.train_way, k_shot=args.shot, n_query=args.train_query, device=device)
    test_sampler = EpisodeSampler(test_set, n_way=args.way, k_shot=args.shot, n_query=args.query, device=device)
    print(f"data {data_name}: {characters.num_classes} characters -> {train_set.num_classes} train / {test_set.num_classes} test classes")

    num_classes = args.train_way if args.method not in ("protonet", "protomaml") else None
    model = Conv4(in_channels=1, hidden=args.hidden, num_classes=num_classes)
    history, train_s = None, 0.0
    limit = budget.share(1)  # training gets what is left after loading; evaluation is outside the budget
    every = max(1, args.iterations // 10)
    t0 = time.perf_counter()
    if args.method == "protonet":
        history = meta_train(model, protonet_step, train_sampler, args.iterations, lr=args.lr,
                             eval_every=every, device=device, time_limit=limit)
        predict = partial(protonet_predict, model)
    elif is_maml:
        step = partial(maml_step, inner_lr=args.inner_lr, inner_steps=args.inner_steps, first_order=args.method == "fomaml")
        history = meta_train(model, step, train_sampler, args.iterations, meta_batch=args.meta_batch, lr=args.lr,
                             eval_every=every, device=device, time_limit=limit)
        predict = partial(maml_predict, model, inner_lr=args.inner_lr, inner_steps=args.test_inner_steps)
    elif args.method == "protomaml":
        step = partial(protomaml_step, inner_lr=args.inner_lr, inner_steps=args.inner_steps)
        history = meta_train(model, step, train_sampler, args.iterations, meta_batch=args.meta_batch, lr=args.lr,
                             eval_every=every, device=device, time_limit=limit)
        predict = partial(protomaml_predict, model, inner_lr=args.inner_lr, inner_steps=args.test_inner_steps)
    elif args.method == "reptile":
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        step = partial(reptile_step, inner_steps=args.inner_steps, inner_lr=args.inner_lr)
        history = meta_train(model, step, train_sampler, args.iterations, meta_batch=args.meta_batch, optimizer=opt,
                             scheduler=lambda o, total: torch.optim.lr_scheduler.LambdaLR(o, lambda i: 1 - i / total),
                             eval_every=every, device=device, time_limit=limit)
        predict = partial(reptile_predict, model, inner_steps=args.test_inner_steps, inner_lr=args.inner_lr)
    else:  # linear: plain classifier on all training classes, then a logistic-regression head per episode
        from torch.utils.data import DataLoader

        from tlhelpers.training.engine import fit

        model = Conv4(in_channels=1, hidden=args.hidden, num_classes=train_set.num_classes)
        history = fit(model, DataLoader(train_set, batch_size=64, shuffle=True), num_epochs=args.epochs, lr=args.lr,
                      device=device, time_limit=limit, progress=False)
        predict = partial(linear_probe_predict, model.forward_features)
    train_s = time.perf_counter() - t0
    model.to(device)

    result = evaluate_episodes(predict, test_sampler, num_episodes=args.episodes, seed=1, progress=False)
    pixels = evaluate_episodes(pixel_predict, test_sampler, num_episodes=args.episodes, seed=1, progress=False)
    fingerprint = episode_fingerprint(test_sampler, args.episodes, seed=1)
    print(f"{args.method} {args.way}-way {args.shot}-shot: {result}; {result.episodes_per_s:.1f} test episodes/s; "
          f"pixel nearest class mean on the same episodes ({fingerprint}): {pixels}")
    unit = "epochs" if args.method == "linear" else "iterations"
    trained = budget.record(history, limit, unit)
    done = trained[f"{unit}_done"]
    train_rate = done * args.meta_batch / train_s if args.method != "linear" and done else float("nan")
    stopped = f" (stopped early by --max-minutes; {trained[f'{unit}_planned']} planned)" if trained["stopped_early"] else ""
    print(f"training: {done} {unit} in {train_s:.1f} s ({train_rate:.1f} tasks/s){stopped}")

    timing = None
    if args.method == "maml":  # one timing per data set and shot count is enough
        timing_model = Conv4(in_channels=1, hidden=args.hidden, num_classes=args.way).to(device)
        timing = time_meta_gradient(timing_model, test_sampler, args.timing_tasks, 0.4, 1, args.timing_repeats, device)
        print(f"MAML meta-gradient, {timing['tasks']} tasks: vmap {1000 * timing['vmap_s']:.1f} ms, "
              f"functional loop {1000 * timing['functional_loop_s']:.1f} ms, autograd loop {1000 * timing['autograd_loop_s']:.1f} ms; "
              f"ratio vmap/autograd-loop = {timing['ratio_vmap_over_autograd_loop']:.2f} (relative grad difference {timing['vmap_rel_diff']:.1e})")

    report = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "data": {"name": data_name, "characters": characters.num_classes,
                 "train_characters": args.train_characters or "standard share", "train_classes": train_set.num_classes,
                 "test_classes": test_set.num_classes,
                 "protocol": "test characters held out; 0/90/180/270-degree rotations are extra classes on each side"},
        "accuracy": result.to_dict(),
        "pixel_baseline": pixels.to_dict(),
        "episodes": {"seed": 1, "n_way": args.way, "k_shot": args.shot, "n_query": args.query,
                     "num_episodes": args.episodes, "fingerprint": fingerprint},
        "training": {"seconds": train_s, "tasks_per_s": train_rate, "budget": trained,
                     "history": history.to_dict() if history is not None and args.method != "linear" else None},
        "maml_meta_gradient_timing": timing,
        "hardware": {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                     "cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                     "platform": platform.platform(), "torch": torch.__version__},
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    out = output_path(args, f"fewshot_{args.method}_{args.dataset}_{args.way}w{args.shot}s_{mode}.json")
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=float))
    os.replace(tmp, out)
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    raise SystemExit(run_or_skip(main))
