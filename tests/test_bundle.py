"""tools/bundle.py: resumable, verified downloads into a classroom bundle, ``--check``, the course's manifest.

Every download comes from a fake manifest of small random files served by a tiny HTTP server on
127.0.0.1 (a thread of this process) that honours Range requests, or ignores them, or cuts the
connection off after some bytes, and logs the Range header of every request. Nothing leaves this machine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("bundle", ROOT / "tools" / "bundle.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bundle = _tool()


class _Server:
    """Serves ``files`` (URL path -> bytes); records (path, Range header) per request."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        self.ignore_range = False
        self.cut_after: int | None = None  # send this many bytes of the next response, then drop the connection
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                data = server.files.get(self.path)
                server.requests.append((self.path, self.headers.get("Range")))
                if data is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                rng = self.headers.get("Range")
                if rng and not server.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                body = data[start:]
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


FILES = {
    "/ds/images.tar.gz": os.urandom(50_000),
    "/ds/labels.bin": os.urandom(3_000),
    "/w/tinynet-{}.pth": os.urandom(20_000),
}


@pytest.fixture()
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    weights = FILES["/w/tinynet-{}.pth"]
    sha = hashlib.sha256(weights).hexdigest()[:8]
    files = {k.format(sha): v for k, v in FILES.items()}
    srv = _Server(files)
    yield srv
    srv.close()


def _entries(srv: _Server) -> list:
    """The fake manifest: two datasets files (MD5) and a weights file named with its SHA-256 prefix."""
    out = []
    for path, data in srv.files.items():
        name = path.rsplit("/", 1)[1]
        if path.startswith("/w/"):
            sha = name.rsplit("-", 1)[1].split(".")[0]
            out.append(bundle.ManifestEntry("tinynet", srv.url + path, f"torch/hub/checkpoints/{name}", sha256=sha,
                                            size=len(data)))
        else:
            out.append(bundle.ManifestEntry("fake", srv.url + path, f"data/fake/{name}",
                                            md5=hashlib.md5(data).hexdigest(), size=len(data)))
    return out


def _write_manifest(tmp_path: Path, entries: list) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"files": [
        {"name": e.name, "url": e.url, "dest": e.dest, "md5": e.md5, "sha256": e.sha256, "size": e.size}
        for e in entries]}))
    return path


def test_download_verifies_and_renames_then_skips(server, tmp_path):
    entries = _entries(server)
    for e in entries:
        path = bundle.download(e, tmp_path, chunk=4096, progress=False)
        assert path == tmp_path / e.dest
        assert path.read_bytes() == server.files[e.url.removeprefix(server.url)]
        assert not path.with_name(path.name + ".part").exists()
    assert [r for _, r in server.requests] == [None] * len(entries)  # fresh downloads ask for the whole file
    for e in entries:  # already there and verified: no request at all
        bundle.download(e, tmp_path, progress=False)
    assert len(server.requests) == len(entries)


def test_resume_after_a_cut_off_download(server, tmp_path):
    entry = _entries(server)[0]
    data = server.files["/ds/images.tar.gz"]
    final = tmp_path / entry.dest
    part = final.with_name(final.name + ".part")
    server.cut_after = 12_345
    with pytest.raises(OSError, match="re-run the same command to resume") as err:
        bundle.download(entry, tmp_path, chunk=4096, progress=False)
    assert "\n" not in str(err.value) and "data/fake/images.tar.gz" in str(err.value)
    assert not final.exists() and part.read_bytes() == data[:12_345]

    bundle.download(entry, tmp_path, chunk=4096, progress=False)
    assert server.requests[-1] == ("/ds/images.tar.gz", "bytes=12345-")
    assert final.read_bytes() == data and not part.exists()


def test_resume_from_a_partial_file_left_behind(server, tmp_path):
    entry = _entries(server)[2]  # the weights file: verified by its SHA-256 prefix
    data = server.files[entry.url.removeprefix(server.url)]
    final = tmp_path / entry.dest
    final.parent.mkdir(parents=True)
    final.with_name(final.name + ".part").write_bytes(data[:777])
    bundle.download(entry, tmp_path, progress=False)
    assert server.requests == [(entry.url.removeprefix(server.url), "bytes=777-")]
    assert final.read_bytes() == data


def test_server_ignoring_range_still_gives_a_correct_file(server, tmp_path):
    server.ignore_range = True
    entry = _entries(server)[0]
    data = server.files["/ds/images.tar.gz"]
    final = tmp_path / entry.dest
    final.parent.mkdir(parents=True)
    final.with_name(final.name + ".part").write_bytes(data[:5_000])
    bundle.download(entry, tmp_path, chunk=4096, progress=False)
    assert server.requests[-1][1] == "bytes=5000-"  # asked to resume, got the whole file (200): started over
    assert final.read_bytes() == data


def test_checksum_mismatch_is_one_line_and_leaves_nothing(server, tmp_path):
    good = _entries(server)[1]
    actual = hashlib.md5(server.files["/ds/labels.bin"]).hexdigest()
    entry = bundle.ManifestEntry(good.name, good.url, good.dest, md5="0" * 32, size=good.size)
    with pytest.raises(bundle.ChecksumError) as err:
        bundle.download(entry, tmp_path, progress=False)
    msg = str(err.value)
    assert "\n" not in msg
    assert "data/fake/labels.bin" in msg and "0" * 32 in msg and actual in msg and "re-run" in msg
    final = tmp_path / entry.dest
    assert not final.exists() and not final.with_name(final.name + ".part").exists()

    weights = _entries(server)[2]
    wrong = bundle.ManifestEntry(weights.name, weights.url, weights.dest, sha256="deadbeef")
    with pytest.raises(bundle.ChecksumError, match=weights.sha256):
        bundle.download(wrong, tmp_path, progress=False)
    assert not list((tmp_path / "torch").rglob("*.p*"))


def test_check_reports_each_status_and_exit_codes(server, tmp_path, capsys):
    images, labels, weights = _entries(server)
    manifest = _write_manifest(tmp_path, [images, labels, weights])
    folder = tmp_path / "bundle"
    args = ["--folder", str(folder), "--manifest", str(manifest), "--no-progress"]

    assert bundle.main([*args, "--check"]) == 1
    assert all(s == "missing" for _, s in bundle.check(folder, bundle.load_manifest(manifest)))
    capsys.readouterr()

    assert bundle.main(args) == 0
    out = capsys.readouterr().out
    assert f"export TLH_DATA={folder.resolve() / 'data'}" in out
    assert f"export TORCH_HOME={folder.resolve() / 'torch'}" in out
    assert "71.3 KiB" in out  # total of the recorded sizes, printed before downloading (50,000 + 3,000 + 20,000 B)
    assert bundle.main([*args, "--check"]) == 0
    assert "3 present, 0 missing, 0 corrupt, 0 partial" in capsys.readouterr().out

    (folder / labels.dest).write_bytes(b"not the labels")  # corrupt
    (folder / weights.dest).rename(folder / (weights.dest + ".part"))  # unfinished
    (folder / images.dest).unlink()  # missing
    got = {e.dest: s for e, s in bundle.check(folder, [images, labels, weights])}
    assert got == {images.dest: "missing", labels.dest: "corrupt", weights.dest: "partial"}
    assert bundle.main([*args, "--check"]) == 1
    out = capsys.readouterr().out
    assert "0 present, 1 missing, 1 corrupt, 1 partial" in out
    assert any(line.startswith("corrupt") and labels.dest in line for line in out.splitlines())

    server.requests.clear()  # a re-run repairs all three, resuming the partial weights file
    assert bundle.main(args) == 0
    assert (folder / labels.dest).read_bytes() == server.files["/ds/labels.bin"]
    assert (weights.url.removeprefix(server.url), f"bytes={weights.size}-") in server.requests  # 416: part complete
    assert bundle.main([*args, "--check"]) == 0


def test_download_failure_exits_1_and_other_files_still_come(server, tmp_path, capsys):
    images, labels, _ = _entries(server)
    broken = bundle.ManifestEntry("gone", server.url + "/nothing.bin", "data/gone.bin", md5="0" * 32)
    manifest = _write_manifest(tmp_path, [broken, labels])
    assert bundle.main(["--folder", str(tmp_path / "b"), "--manifest", str(manifest), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "data/gone.bin" in err and "HTTP 404" in err
    assert (tmp_path / "b" / labels.dest).is_file()


def test_load_manifest_relative_urls_and_bad_entries(tmp_path):
    (tmp_path / "mirror").mkdir()
    data = os.urandom(1000)
    (tmp_path / "mirror" / "a.bin").write_bytes(data)
    path = tmp_path / "m.json"
    path.write_text(json.dumps([{"name": "a", "url": "mirror/a.bin", "dest": "data/a.bin",
                                 "md5": hashlib.md5(data).hexdigest()}]))
    (entry,) = bundle.load_manifest(path)
    assert entry.url.startswith("file://")
    assert bundle.download(entry, tmp_path / "out", progress=False).read_bytes() == data  # a file:// mirror works

    for bad, words in [({"name": "a", "url": "u", "dest": "../x", "md5": "ab"}, "leaves the bundle folder"),
                       ({"name": "a", "url": "u", "dest": "x"}, "no hex md5 or sha256"),
                       ({"name": "a", "dest": "x", "md5": "ab"}, "has no url")]:
        path.write_text(json.dumps([bad]))
        with pytest.raises(ValueError, match=words):
            bundle.load_manifest(path)


def test_course_manifest_lists_every_chapter_file_with_the_catalogs_paths(capsys):
    from tlhelpers.data.catalog import CHAPTERS, dataset_files, weights_file

    laptop = bundle.manifest("laptop")
    assert laptop == bundle.manifest("full")
    by_dest = {e.dest: e for e in laptop}
    assert len(by_dest) == len(laptop)  # each file once (pets and resnet50 are in two chapters)
    for ch in CHAPTERS.values():
        for name in ch.datasets:
            for f in dataset_files(name):
                e = by_dest[f"data/{f.path}"]
                assert (e.url, e.md5, e.sha256, e.size) == (f.url, f.md5, None, f.size)
        for arch in ch.archs:
            w = weights_file(arch)
            e = by_dest[f"torch/hub/checkpoints/{w.file_name}"]
            assert e.url == w.weights.url and e.sha256 == w.weights.url.rsplit("-", 1)[1].split(".")[0]
            assert e.md5 is None
        for name in ch.benchmark_datasets:
            assert not any(e.name == name for e in laptop)
    assert {"data/oxford-iiit-pet/images.tar.gz", "data/omniglot-py/images_background.zip",
            "torch/hub/checkpoints/vgg16-397923af.pth"} <= set(by_dest)
    assert len(laptop) == sum(1 for name in dict.fromkeys(d for c in CHAPTERS.values() for d in c.datasets)
                              for _ in dataset_files(name)) + len({a for c in CHAPTERS.values() for a in c.archs})

    with_bench = {e.dest for e in bundle.manifest("laptop", include_benchmarks=True)}
    assert {"data/svhn/train_32x32.mat", "data/usps/usps.bz2"} <= with_bench - set(by_dest)

    assert bundle.manifest("reduced") == []
    assert bundle.main(["--budget", "reduced"]) == 0
    assert "needs no files" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown budget"):
        bundle.manifest("huge")
