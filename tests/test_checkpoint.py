import pytest
import torch

from tlhelpers.checkpoint import CheckpointError, atomic_save, safe_load


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
    with pytest.raises(CheckpointError):
        safe_load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        safe_load(tmp_path / "nope.pt")


def test_run_checkpoint_is_unique_per_config(tmp_path, monkeypatch):
    from tlhelpers.checkpoint import run_checkpoint

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
