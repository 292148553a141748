from __future__ import annotations

import pytest
import torch

from tlhelpers.course import domain_pairs as pairs
from tlhelpers.course.domain_pairs import check_compatible, load_domain, load_pair, match_format
from tlhelpers.data.tensor_dataset import ImageTensorDataset


def test_unknown_domain_lists_valid_names():
    with pytest.raises(ValueError, match="valid domains: uci_digits, uci_digits_m, fontdigits, mnistm_style, mnist, mnistm, svhn, usps"):
        load_pair("mnist", "imagenet")
    with pytest.raises(ValueError, match="unknown domain"):
        load_domain("MNIST")


def test_same_source_and_target_rejected():
    with pytest.raises(ValueError, match="two different domains"):
        load_pair("mnist", "mnist")


def test_match_format_grey_to_three_channels_and_resizes():
    grey = torch.arange(16 * 16, dtype=torch.int64).reshape(1, 1, 16, 16).remainder(256).to(torch.uint8)
    out = match_format(grey, 32)
    assert out.shape == (1, 3, 32, 32) and out.dtype == torch.uint8
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    # Agreement with an independent reference: torchvision's antialiased bilinear resize.
    from torchvision.transforms.functional import resize

    ref = resize(grey.float(), [32, 32], antialias=True).round().clamp(0, 255).to(torch.uint8)
    assert (out[:, :1].int() - ref.int()).abs().max() <= 1
    colour = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(match_format(colour, 32), colour)


def test_match_format_rejects_bad_images():
    with pytest.raises(ValueError, match="uint8"):
        match_format(torch.zeros(1, 3, 8, 8), 32)
    with pytest.raises(ValueError, match="1 or 3"):
        match_format(torch.zeros(1, 2, 8, 8, dtype=torch.uint8), 32)


def test_check_compatible_names_the_fix():
    a = ImageTensorDataset(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.tensor([0, 1]), ["0", "1"])
    b = ImageTensorDataset(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.tensor([0, 1]), ["0", "1"])
    with pytest.raises(ValueError, match="match_format"):
        check_compatible(a, b)
    check_compatible(a, a)


def test_reduced_pair_is_offline_and_matched():
    pair = load_pair("fontdigits", "mnistm_style", n_train=40, n_test=20, image_size=32)
    assert pair.name == "fontdigits_mnistm_style"
    for ds in (pair.source_train, pair.source_test, pair.target_train, pair.target_test):
        assert ds.image_shape == (3, 32, 32) and ds.num_classes == 10
    assert len(pair.source_train) == 40 and len(pair.target_test) == 20
    # the target domain has colour; the source's three channels are equal
    src, tgt = pair.source_train.images.float(), pair.target_train.images.float()
    assert torch.equal(src[:, 0], src[:, 1])
    assert (tgt[:, 0] - tgt[:, 1]).abs().mean() > 1


def test_full_domains_try_without_download_first(monkeypatch):
    tv = pytest.importorskip("tlhelpers.data.torchvision_sets")
    cache = pytest.importorskip("tlhelpers.data.tensor_cache")
    calls = []

    def fake_load(name, split, root=None, transform=None, download=True):
        calls.append(download)
        return [(None, 0)] * 5

    def fake_cache(dataset, image_size, cache_file=None, progress=True):
        images = torch.zeros(len(dataset), 1, 28, 28, dtype=torch.uint8)
        return ImageTensorDataset(images, torch.zeros(len(dataset), dtype=torch.long), [str(i) for i in range(10)])

    monkeypatch.setattr(tv, "load_dataset", fake_load)
    monkeypatch.setattr(cache, "to_tensor_dataset", fake_cache)
    ds = load_domain("mnist", "test", root="/nonexistent", n=3)
    assert calls == [False]  # files "present": no download asked
    assert ds.image_shape == (3, 32, 32) and len(ds) == 3


def test_pairs_table_is_consistent():
    for source, target in pairs.PAIRS:
        assert source in pairs.REDUCED_DOMAINS + pairs.FULL_DOMAINS
        assert target in pairs.REDUCED_DOMAINS + pairs.FULL_DOMAINS


def test_reduced_real_pair_is_offline_and_matched():
    pair = load_pair("uci_digits", "uci_digits_m", n_train=50, n_test=30)
    assert pair.name == "uci_digits_uci_digits_m"
    for ds in (pair.source_train, pair.source_test, pair.target_train, pair.target_test):
        assert ds.image_shape == (3, 32, 32) and ds.images.dtype == torch.uint8 and ds.num_classes == 10
    assert len(pair.source_train) == 50 and len(pair.target_test) == 30
    src, tgt = pair.source_train.images.float(), pair.target_train.images.float()
    assert torch.equal(src[:, 0], src[:, 2])  # grey handwriting copied to 3 channels
    assert (tgt[:, 0] - tgt[:, 1]).abs().mean() > 1  # photo colours


def test_every_domain_has_a_description():
    assert set(pairs.DESCRIPTIONS) == set(pairs.REDUCED_DOMAINS + pairs.FULL_DOMAINS)
