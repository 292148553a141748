from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from tlhelpers.data.mnistm import build_mnistm
from tlhelpers.data.torchvision_sets import load_dataset


@pytest.fixture
def fake_mnist(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    n = 8
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 0x0803, n, 28, 28) + images.tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, n) + labels.tobytes())
    return tmp_path, images, labels


def test_build_mnistm_blends_and_caches(fake_mnist, monkeypatch):
    root, images, labels = fake_mnist
    photo = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    ds = build_mnistm(root, "train", photos=[photo], seed=0, download=False)
    assert ds.images.shape == (8, 3, 28, 28) and ds.labels.tolist() == labels.tolist()
    assert ds.classes == [str(d) for d in range(10)]
    # independent reference: the image equals |crop - digit| for some crop of the photo
    digit = torch.from_numpy(images[0]).int()
    diff = ds.images[0].int()
    ref = torch.from_numpy(photo).permute(2, 0, 1).int()
    matches = [
        torch.equal((ref[:, y:y + 28, x:x + 28] - digit).abs(), diff)
        for y in range(40 - 28 + 1) for x in range(50 - 28 + 1)
    ]
    assert any(matches)
    cache_files = list((root / "mnistm").glob("*.pt"))
    assert len(cache_files) == 1

    # the second call reuses the cache: blending must not run
    import tlhelpers.data.mnistm as mnistm

    def fail(*args, **kwargs):
        raise AssertionError("blend_with_photos called despite a cache")

    monkeypatch.setattr(mnistm, "blend_with_photos", fail)
    again = build_mnistm(root, "train", photos=[photo], seed=0, download=False)
    assert torch.equal(again.images, ds.images)
    monkeypatch.undo()

    # other photos or seed -> another cache entry, other images
    other = build_mnistm(root, "train", photos=[photo[::-1].copy()], seed=0, download=False)
    assert not torch.equal(other.images, ds.images)


def test_truncated_cache_is_rebuilt(fake_mnist):
    root, _, _ = fake_mnist
    photo = np.full((30, 30, 3), 200, dtype=np.uint8)
    ds = build_mnistm(root, "test", photos=[photo], download=False)
    (cache,) = (root / "mnistm").glob("*.pt")
    cache.write_bytes(cache.read_bytes()[:100])
    with pytest.warns(UserWarning, match="rebuilding"):
        rebuilt = build_mnistm(root, "test", photos=[photo], download=False)
    assert torch.equal(rebuilt.images, ds.images)


def test_load_dataset_mnistm_uses_sample_photos(fake_mnist):
    root, _, labels = fake_mnist
    ds = load_dataset("mnistm", "train", root=root, download=False)
    assert len(ds) == 8
    x, y = ds[3]
    assert x.shape == (3, 28, 28) and x.dtype == torch.float32 and y == int(labels[3])
