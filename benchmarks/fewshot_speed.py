"""Few-shot training speed: our Conv-4 against a plain Conv-4 with ``nn.BatchNorm2d``, same run.

One training step is a ProtoNet step (forward, query cross-entropy, backward, Adam update) on one
20-way episode of 320 images at 28x28 (1 support + 15 queries per class), the setting in which the
exact plain-op batch norm once made our step about 2x slower. Three models with the same weights
are timed in turn, repeat after repeat, and the medians compared:

- ``ours``: ``tlhelpers.models.conv4.Conv4`` as ProtoNet, the baselines, FOMAML, Reptile and
  evaluation run it (fused batch norm, batch statistics only);
- ``ours_exact``: the same model inside ``exact_batchnorm`` (what second-order MAML under ``vmap``
  runs), for reference;
- ``reference``: four plain blocks of ``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.ReLU``, ``nn.MaxPool2d``.

The ratio reported is the median over repeats of the ratio of two steps timed side by side (so
both share the machine's load of that moment); the goal is ``ours / reference <= 1.1``. Timings use ``--threads`` threads (default 1, so that
other work on a shared machine disturbs them less); on a shared machine they are noisy.

Example:
    python benchmarks/fewshot_speed.py --reduced
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import add_run_arguments, output_path  # noqa: E402

from tlhelpers.core.runtime import count, get_device  # noqa: E402
from tlhelpers.fewshot.protonet import protonet_step  # noqa: E402
from tlhelpers.fewshot.sampler import EpisodeSampler  # noqa: E402
from tlhelpers.models.conv4 import Conv4, exact_batchnorm  # noqa: E402
from tlhelpers.training.engine import apply_gradients  # noqa: E402


def reference_conv4(hidden: int) -> nn.Module:
    """Conv-4 from stock layers only, with ``nn.BatchNorm2d`` (running statistics tracked)."""
    blocks = []
    for i in range(4):
        blocks += [nn.Conv2d(1 if i == 0 else hidden, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*blocks, nn.Flatten())


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reduced", action="store_true", help="record the run as reduced mode (the sizes are the same)")
    p.add_argument("--way", type=int, default=20)
    p.add_argument("--shot", type=int, default=1)
    p.add_argument("--query", type=int, default=15)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--repeats", type=int, default=None, help="timed steps per model (default 11)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default=None)
    add_run_arguments(p)
    args = p.parse_args(argv)
    args.repeats = args.repeats or count(11, 2)
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    mode = "reduced" if args.reduced else "full"

    gen = torch.Generator().manual_seed(0)
    per_class = args.shot + args.query
    images = torch.randint(0, 256, (args.way * per_class, 1, 28, 28), dtype=torch.uint8, generator=gen)
    labels = torch.arange(args.way).repeat_interleave(per_class)
    sampler = EpisodeSampler(images, labels, n_way=args.way, k_shot=args.shot, n_query=args.query, device=device)
    batch = sampler.sample_batch(1, gen).to(device)

    torch.manual_seed(0)
    ours = Conv4(in_channels=1, hidden=args.hidden).to(device)
    ref = reference_conv4(args.hidden).to(device)
    ref_params = [m for m in ref if isinstance(m, nn.Conv2d | nn.BatchNorm2d)]
    ours_params = [m for block in ours.encoder for m in block if isinstance(m, nn.Conv2d) or hasattr(m, "exact")]
    with torch.no_grad():
        for a, b in zip(ref_params, ours_params):
            a.weight.copy_(b.weight)
            a.bias.copy_(b.bias)
    exact = Conv4(in_channels=1, hidden=args.hidden).to(device)
    exact.load_state_dict(ours.state_dict())
    models = {"ours": ours, "ours_exact": exact, "reference": ref}
    opts = {name: torch.optim.Adam(m.parameters(), lr=1e-3) for name, m in models.items()}

    def step(name: str) -> float:
        model, opt = models[name], opts[name]
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if name == "ours_exact":
            with exact_batchnorm(model):
                out = protonet_step(model, batch)
        else:
            out = protonet_step(model, batch)
        apply_gradients(model, out)  # the loops' rule: the step gives the loss, backward happens here
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        assert not torch.isnan(out.loss), "NaN loss"
        return time.perf_counter() - t

    for name in models:  # warm-up
        step(name)
        step(name)
    times: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    for r in range(args.repeats):  # rotate the order so that no model always runs first
        for name in names[r % 3:] + names[: r % 3]:
            times[name].append(step(name))

    def med(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    median = {name: med(v) for name, v in times.items()}
    # ratios of steps timed side by side share the machine's load at that moment
    ratio = med([a / b for a, b in zip(times["ours"], times["reference"])])
    ratio_exact = med([a / b for a, b in zip(times["ours_exact"], times["reference"])])
    images_per_step = args.way * per_class
    print(f"one {args.way}-way training step ({images_per_step} images, {args.threads} thread(s), {device}): "
          + ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in median.items()))
    print(f"ratio ours / reference = {ratio:.3f} (goal <= 1.1); exact form / reference = {ratio_exact:.2f}")

    report = {
        "benchmark": "fewshot_speed",
        "mode": mode,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "step": f"ProtoNet training step, {args.way}-way {args.shot}-shot {args.query} queries ({images_per_step} images 28x28), "
                f"Conv-4 width {args.hidden}, Adam",
        "median_s": median,
        "times_s": times,
        "ratio_ours_over_reference": ratio,  # median of paired ratios
        "ratio_exact_over_reference": ratio_exact,
        "goal": "ratio_ours_over_reference <= 1.1",
        "hardware": {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                     "cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                     "platform": platform.platform(), "torch": torch.__version__},
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    out = output_path(args, f"fewshot_speed_{mode}.json")
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out)
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
