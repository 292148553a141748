import pytest
import torch

from tlhelpers.core.checkpoint import CheckpointError, atomic_save, safe_load


def test_roundtrip(tmp_path):
    obj = {"w": torch.arange(5.0), "epoch": 3, "names": ["a", "b"]}
    atomic_save(obj, tmp_path / "sub" / "c.pt")
    back = safe_load(tmp_path / "sub" / "c.pt")
    assert torch.equal(back["w"], obj["w"]) and back["epoch"] == 3 and back["names"] == ["a", "b"]
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["c.pt"]  # no temp file left behind


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "c.pt"
    atomic_save({"v": 1}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disconnect")

    with pytest.raises(RuntimeError):
        atomic_save({"v": Boom()}, path)
    assert safe_load(path)["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "c.pt"
    atomic_save({"w": torch.randn(100)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        safe_load(path)


def test_weights_only_refuses_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"f": print}, path)  # a pickled callable: a plain torch.load would import it
    with pytest.raises(CheckpointError, match=r"refused as unsafe \(weights_only\): it holds a pickled Python object "
                       r"\((builtins\.)?print\), and loading one could run code; save only tensors .*state_dict") as info:
        safe_load(path)
    assert "truncated" not in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("wording, shown", [
    ("WeightsUnpickler error: Unsupported class __builtin__.print", "builtins.print"),  # torch 2.2
    ("WeightsUnpickler error: Unsupported global: GLOBAL builtins.print was not an allowed global", "builtins.print"),
    ("WeightsUnpickler error: Unsupported global: GLOBAL print was not an allowed global", "print"),
    ("WeightsUnpickler error: something new", None),
])
def test_weights_only_refusal_names_the_object_in_each_torch_wording(tmp_path, monkeypatch, wording, shown):
    import pickle

    path = tmp_path / "evil.pt"
    torch.save({"f": print}, path)

    def refuse(*args, **kwargs):
        raise pickle.UnpicklingError(f"Weights only load failed. {wording}")

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(CheckpointError, match="refused as unsafe") as info:
        safe_load(path)
    named = f"a pickled Python object ({shown}), and" if shown else "a pickled Python object, and"
    assert named in str(info.value)


def test_garbage_is_corrupt_not_unsafe(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        safe_load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        safe_load(tmp_path / "nope.pt")


def test_run_checkpoint_is_unique_per_config(tmp_path, monkeypatch):
    from tlhelpers.core.checkpoint import run_checkpoint

    monkeypatch.setenv("TLH_DATA", str(tmp_path))
    monkeypatch.setenv("TLH_REDUCED", "0")
    a = run_checkpoint("pets-head", lr=1e-3, num_epochs=5)
    assert a == run_checkpoint("pets-head", num_epochs=5, lr=1e-3)  # order does not matter
    assert a != run_checkpoint("pets-head", lr=1e-4, num_epochs=5)  # a changed setting is a new run
    assert a.parent == tmp_path / "checkpoints" and a.name.startswith("pets-head-")
    monkeypatch.setenv("TLH_REDUCED", "1")
    assert a != run_checkpoint("pets-head", lr=1e-3, num_epochs=5)  # reduced and full runs never mix
    with pytest.raises(ValueError, match="letters, digits"):
        run_checkpoint("../evil")


def _folder(root, layout):
    """Write tiny PNG files: ``layout`` maps "class/name.png" to a grey level."""
    from PIL import Image

    for rel, level in layout.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (6, 6), (level, level, level)).save(root / rel)


def test_fingerprint_of_an_image_folder_follows_files_and_labels_not_location(tmp_path):
    from torchvision.datasets import ImageFolder

    from tlhelpers.core.checkpoint import fingerprint_dataset

    layout = {"cat/a.png": 10, "cat/b.png": 20, "dog/c.png": 30, "dog/d.png": 40}
    _folder(tmp_path / "one", layout)
    _folder(tmp_path / "two", layout)
    base = fingerprint_dataset(ImageFolder(tmp_path / "one"))
    assert len(base) == 16 and base == fingerprint_dataset(ImageFolder(tmp_path / "two"))  # a copy elsewhere
    (tmp_path / "two" / "cat" / "b.png").rename(tmp_path / "two" / "dog" / "b.png")  # relabelled: same files
    moved = fingerprint_dataset(ImageFolder(tmp_path / "two"))
    assert moved != base
    from PIL import Image

    Image.new("RGB", (7, 6)).save(tmp_path / "one" / "cat" / "a.png")  # an edit changes the size
    assert fingerprint_dataset(ImageFolder(tmp_path / "one")) != base
    # a same-size edit shows only with contents=True (ImageFolder does not open the files)
    for name, data in (("three", b"x" * 10), ("four", b"y" * 10)):
        (tmp_path / name / "cat").mkdir(parents=True)
        (tmp_path / name / "cat" / "a.png").write_bytes(data)
    three, four = ImageFolder(tmp_path / "three"), ImageFolder(tmp_path / "four")
    assert fingerprint_dataset(three) == fingerprint_dataset(four)
    assert fingerprint_dataset(three, contents=True) != fingerprint_dataset(four, contents=True)


def test_fingerprint_of_tensors_follows_every_value():
    from torch.utils.data import Subset, TensorDataset

    from tlhelpers.core.checkpoint import fingerprint_dataset
    from tlhelpers.data.tensor_dataset import ImageTensorDataset

    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    labels = torch.arange(10) % 2
    ds = ImageTensorDataset(images, labels, ["a", "b"])
    base = fingerprint_dataset(ds)
    assert base == fingerprint_dataset(ImageTensorDataset(images.clone(), labels.clone(), ["a", "b"]))
    assert base == fingerprint_dataset(ds.with_transform(lambda x: x.float()))  # transforms are not data
    poked = images.clone()
    poked[7, 2, 3, 3] ^= 1
    assert fingerprint_dataset(ImageTensorDataset(poked, labels, ["a", "b"])) != base
    assert fingerprint_dataset(ImageTensorDataset(images, 1 - labels, ["a", "b"])) != base
    assert fingerprint_dataset(ImageTensorDataset(images, labels, ["b", "a"])) != base
    # max_items hashes spread rows: a change in a hashed row (the last) shows, the length always does
    assert fingerprint_dataset(ImageTensorDataset(poked, labels, ["a", "b"]), max_items=2) == fingerprint_dataset(
        ds, max_items=2)
    t = TensorDataset(images.float(), labels)
    assert fingerprint_dataset(t) != fingerprint_dataset(TensorDataset(poked.float(), labels))
    assert fingerprint_dataset(Subset(t, [1, 2])) != fingerprint_dataset(Subset(t, [2, 1]))
    with pytest.raises(ValueError, match="max_items=0"):
        fingerprint_dataset(ds, max_items=0)


def test_loader_state_restores_a_dataloaders_generators():
    from torch.utils.data import DataLoader, RandomSampler, TensorDataset

    from tlhelpers.core.checkpoint import load_loader_state, loader_state

    ds = TensorDataset(torch.arange(20))
    sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(1))
    loader = DataLoader(ds, batch_size=5, sampler=sampler, generator=torch.Generator().manual_seed(2))
    list(loader)
    state = loader_state(loader)
    assert set(state) == {"generator", "sampler.generator"}
    epoch2 = [b[0].tolist() for b in loader]
    twin = DataLoader(ds, batch_size=5, sampler=RandomSampler(ds, generator=torch.Generator().manual_seed(1)),
                      generator=torch.Generator().manual_seed(2))
    assert [b[0].tolist() for b in twin] != epoch2  # from the seed: the first epoch's order again
    load_loader_state(twin, state)
    assert [b[0].tolist() for b in twin] == epoch2
    assert loader_state(DataLoader(ds, 5, shuffle=True)) == {}  # the global RNG: fit saves it itself
    gen = torch.Generator().manual_seed(0)
    saved = loader_state(gen)
    a = torch.rand(3, generator=gen)
    load_loader_state(gen, saved)
    assert torch.equal(a, torch.rand(3, generator=gen))
    with pytest.raises(CheckpointError, match="saved loader state has parts.*build the loader as in the saved run"):
        load_loader_state(DataLoader(ds, 5), state)


def test_run_identity_ignores_the_implementation_flags_torch_versions_add():
    """A torch upgrade (new optimizer flags such as decoupled_weight_decay) must not orphan a checkpoint."""
    import torch

    from tlhelpers.core.checkpoint import identity_changes, run_identity

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = run_identity(model, opt)
    for group in opt.param_groups:
        group["decoupled_weight_decay"] = not group.get("decoupled_weight_decay", False)
        group["foreach"] = True
    assert identity_changes(before, run_identity(model, opt)) == []
    opt.param_groups[0]["lr"] = 1e-2
    assert identity_changes(before, run_identity(model, opt)) == ["lr 0.001 -> 0.01"]


def test_run_identity_survives_a_class_moving_to_another_module():
    """Moving MiniResNet from tlhelpers.mini_resnet to tlhelpers.models.mini_resnet orphaned every checkpoint."""
    import torch

    from tlhelpers.core.checkpoint import identity_changes, run_identity

    class Net(torch.nn.Linear):
        pass

    model = Net(2, 2)
    before = run_identity(model, torch.optim.SGD(model.parameters(), lr=0.1))
    Net.__module__ = "somewhere.else"
    assert identity_changes(before, run_identity(model, torch.optim.SGD(model.parameters(), lr=0.1))) == []
