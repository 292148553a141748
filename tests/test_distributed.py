"""``fit`` under DistributedDataParallel: two gloo processes on the CPU train as one process on the global batch."""

from __future__ import annotations

import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tlhelpers.training.engine import History, distributed_loader, fit

WORLD, BATCH, EPOCHS = 2, 8, 2


def _data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return TensorDataset(x, (x[:, 0] - x[:, 1] > 0).long())


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))  # no BatchNorm: per-process statistics


def _train(model: nn.Module, train: DataLoader, val: DataLoader, checkpoint: Path) -> History:
    return fit(model, train, EPOCHS, lr=1e-2, val_loader=val, device="cpu", progress=False, checkpoint_path=checkpoint)


def _worker(rank: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        model = _model()
        train = distributed_loader(_data(64, 0), BATCH, shuffle=False)
        val = distributed_loader(_data(32, 1), BATCH, shuffle=False)
        history = _train(model, train, val, Path(folder) / f"rank{rank}.pt")  # a path per rank: who writes?
        torch.save({"weights": model.state_dict(), "history": history.to_dict()}, Path(folder) / f"out{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one_process_on_the_global_batch(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)

    single = _model()
    reference = _train(single, DataLoader(_data(64, 0), batch_size=WORLD * BATCH), DataLoader(_data(32, 1), batch_size=16),
                       tmp_path / "single.pt")
    outs = [torch.load(tmp_path / f"out{r}.pt", weights_only=True) for r in range(WORLD)]
    for k, v in single.state_dict().items():
        for out in outs:
            torch.testing.assert_close(out["weights"][k], v, rtol=1e-5, atol=1e-6)
    # One History on every rank, with the epoch's metrics averaged over the ranks (= the global batch's).
    assert outs[0]["history"] == outs[1]["history"]
    for key in ("step", "train_loss", "train_acc", "val_loss", "val_acc"):
        torch.testing.assert_close(outs[0]["history"][key], reference[key], rtol=1e-5, atol=1e-6)
    assert (tmp_path / "rank0.pt").exists() and not (tmp_path / "rank1.pt").exists()  # only rank 0 writes


def test_distributed_loader_without_a_process_group_is_the_whole_dataset() -> None:
    data = _data(10, 0)
    loader = distributed_loader(data, 4, shuffle=True, seed=3)
    first = torch.cat([x for x, _ in loader])
    assert sorted(first[:, 0].tolist()) == sorted(data.tensors[0][:, 0].tolist())
    loader.sampler.set_epoch(1)
    assert not torch.equal(torch.cat([x for x, _ in loader]), first)  # a new order each epoch
