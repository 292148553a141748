"""Download every dataset and weights file a budget's notebooks read into one folder, for a classroom.

The files come from :mod:`tlhelpers.data.catalog` (every chapter's datasets, and with
``--benchmarks`` the datasets only benchmarks read, and the pretrained weights of every chapter's
architectures). They go in one folder an instructor can copy to a USB stick or a shared drive::

    <folder>/data/<the catalog's path>           e.g. data/oxford-iiit-pet/images.tar.gz
    <folder>/torch/hub/checkpoints/<file name>   e.g. torch/hub/checkpoints/resnet50-11ad3fa6.pth

so ``TLH_DATA=<folder>/data TORCH_HOME=<folder>/torch`` make every notebook run with no network.

Downloads resume: a file arrives in ``<dest>.part`` and a re-run continues it with an HTTP Range
request; it is renamed to its name only once its checksum matches (datasets: the MD5 torchvision
checks; weights: the SHA-256 prefix in the file name, as ``torch.hub`` checks it). Files already
there and verified are skipped. ``--check`` downloads nothing and reports each file as present,
missing, corrupt (checksum mismatch) or partial (an unfinished ``.part``); it exits with status 1
when any file is not present. ``--manifest FILE`` reads the list of files from a JSON file instead
(see :func:`load_manifest`).

Usage:
    python tools/bundle.py --budget laptop --folder classroom-bundle
    python tools/bundle.py --budget full --folder /media/usb/tl-course --benchmarks
    python tools/bundle.py --folder classroom-bundle --check
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shlex
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]

#: What :func:`check` reports for one file.
STATUSES: tuple[str, ...] = ("present", "missing", "corrupt", "partial")
#: The budgets, as in ``tlhelpers.core.runtime.BUDGETS``; reduced mode generates its data in-process.
BUDGETS: tuple[str, ...] = ("reduced", "laptop", "full")
_HEX = re.compile(r"[0-9a-f]+")


class ChecksumError(ValueError):
    """A downloaded file's checksum is not the one its manifest records."""


@dataclass(frozen=True)
class ManifestEntry:
    """One file of the bundle.

    Attributes:
        name: what it belongs to, e.g. ``"pets"`` or ``"resnet50"``.
        url: where it is downloaded from.
        dest: where it goes, relative to the bundle folder (``data/...`` or ``torch/hub/checkpoints/...``).
        md5: its MD5 (lowercase hex), or None.
        sha256: its SHA-256 or the start of it (lowercase hex, as in torchvision's weights file names), or None.
        size: bytes, or None when not recorded (weights: torchvision's MiB figure, rounded, so shown only).
    """

    name: str
    url: str
    dest: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None

    @property
    def checksum(self) -> str:
        """The recorded checksum as printed, e.g. ``"MD5 5c4f..."`` or ``"SHA-256 11ad3fa6..."``."""
        if self.md5:
            return f"MD5 {self.md5}"
        return f"SHA-256 {self.sha256}..." if self.sha256 else "no checksum"


def manifest(budget: str, include_benchmarks: bool = False) -> list[ManifestEntry]:
    """The files a budget's notebooks read, from :mod:`tlhelpers.data.catalog` (no network).

    Args:
        budget: ``"reduced"`` (no files: its data is generated in-process), ``"laptop"`` or ``"full"``
            (both read the same files).
        include_benchmarks: also the datasets only the benchmarks read (``Chapter.benchmark_datasets``).

    Returns:
        Datasets first (chapter order), then weights, each file once.

    Raises:
        ValueError: for an unknown budget.
    """
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; use one of {', '.join(BUDGETS)}.")
    if budget == "reduced":
        return []
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tlhelpers.data.catalog import CHAPTERS, dataset_files, weights_file

    names = [d for ch in CHAPTERS.values() for d in (*ch.datasets, *(ch.benchmark_datasets if include_benchmarks else ()))]
    entries = [ManifestEntry(f.dataset, f.url, f"data/{f.path}", md5=f.md5, size=f.size)
               for name in dict.fromkeys(names) for f in dataset_files(name)]
    for arch in dict.fromkeys(a for ch in CHAPTERS.values() for a in ch.archs):
        w = weights_file(arch)
        size = None if w.size_mib is None else round(w.size_mib * 2**20)
        entries.append(ManifestEntry(arch, w.weights.url, f"torch/{w.path}", sha256=w.sha256_prefix, size=size))
    return list({e.dest: e for e in entries}.values())


def load_manifest(json_path: str | Path) -> list[ManifestEntry]:
    """A custom manifest: a JSON list (or ``{"files": [...]}``) of objects with the fields of :class:`ManifestEntry`.

    A ``url`` without a scheme is a path relative to the manifest's folder (a local mirror).

    Args:
        json_path: the JSON file.

    Returns:
        Its entries, in order.

    Raises:
        ValueError: for an entry without name/url/dest, with a dest outside the folder, or without a checksum.
    """
    path = Path(json_path)
    raw = json.loads(path.read_text())
    items = raw.get("files") if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a JSON list of files (or {{\"files\": [...]}}); see tools/bundle.py.")
    entries = []
    for i, item in enumerate(items):
        missing = [k for k in ("name", "url", "dest") if not item.get(k)]
        if missing:
            raise ValueError(f"{path}: file {i} has no {', '.join(missing)}; give name, url, dest and md5 or sha256.")
        dest = PurePosixPath(item["dest"])
        if dest.is_absolute() or ".." in dest.parts:
            raise ValueError(f"{path}: dest {item['dest']!r} leaves the bundle folder; give a relative path without '..'.")
        md5, sha = (item.get(k).lower() if item.get(k) else None for k in ("md5", "sha256"))
        if not (md5 and _HEX.fullmatch(md5)) and not (sha and _HEX.fullmatch(sha)):
            raise ValueError(f"{path}: {item['dest']} has no hex md5 or sha256; add one so the download can be verified.")
        url = item["url"]
        if not urlparse(url).scheme:
            url = (path.resolve().parent / url).as_uri()
        entries.append(ManifestEntry(item["name"], url, str(dest), md5, sha, item.get("size")))
    return entries


def _digests(path: Path, entry: ManifestEntry) -> tuple[str, str]:
    """(expected, actual) hex digests of ``path`` for ``entry``'s checksum (actual cut to the expected length)."""
    algo, expected = ("md5", entry.md5) if entry.md5 else ("sha256", entry.sha256 or "")
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    actual = h.hexdigest()
    return expected, actual if algo == "md5" else actual[: len(expected)]


def verified(path: Path, entry: ManifestEntry) -> bool:
    """True when ``path`` is a file whose checksum is the one ``entry`` records (no checksum: it exists)."""
    if not path.is_file():
        return False
    if not (entry.md5 or entry.sha256):
        return True
    expected, actual = _digests(path, entry)
    return actual == expected


def _part(final: Path) -> Path:
    return final.with_name(final.name + ".part")


def download(
    entry: ManifestEntry, folder: str | Path, *, chunk: int = 1 << 20, timeout: float = 60, progress: bool = True
) -> Path:
    """Download one file into the bundle, resuming an unfinished one; skip it when already there and verified.

    The bytes go to ``<dest>.part``; a present ``.part`` is continued with ``Range: bytes=<its size>-``
    (a server that answers with the whole file instead is read from the start). The finished file's
    checksum is checked, then it is renamed to ``<dest>`` (atomically: a file at ``<dest>`` is always whole).

    Args:
        entry: the file.
        folder: the bundle folder.
        chunk: bytes read at a time.
        timeout: seconds to wait for the server.
        progress: show a progress bar (tqdm).

    Returns:
        The file's path.

    Raises:
        ChecksumError: the downloaded file's checksum differs (its ``.part`` is deleted).
        OSError: the download failed or was cut off (its ``.part`` is kept; re-run to resume).
    """
    final = Path(folder) / entry.dest
    if verified(final, entry):
        return final
    part = _part(final)
    part.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.is_file() else 0
    if entry.size is not None and entry.md5 and offset > entry.size:  # (weights' sizes are rounded: not used)
        part.unlink()
        offset = 0
    try:
        _fetch(entry, part, offset, chunk=chunk, timeout=timeout, progress=progress)
    except urllib.error.HTTPError as err:
        if err.code != 416:  # 416: nothing after the .part's end; it may be the whole file already
            raise OSError(f"downloading {entry.dest} from {entry.url} failed: HTTP {err.code} {err.reason}; "
                          f"re-run later, or download it by hand to {final}.") from err
    except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, a cut-off (IncompleteRead)
        got = part.stat().st_size if part.is_file() else 0
        raise OSError(f"downloading {entry.dest} from {entry.url} stopped after {got:,} bytes ({err}); "
                      "re-run the same command to resume it.") from err
    expected, actual = _digests(part, entry) if (entry.md5 or entry.sha256) else ("", "")
    if actual != expected:
        part.unlink()
        kind = "MD5" if entry.md5 else "SHA-256"
        raise ChecksumError(f"{entry.dest}: {kind} mismatch, expected {expected}, got {actual}; the partial file was "
                            "deleted, re-run the same command to download it again.")
    os.replace(part, final)
    return final


def _fetch(entry: ManifestEntry, part: Path, offset: int, *, chunk: int, timeout: float, progress: bool) -> None:
    """Append the bytes after ``offset`` to ``part`` (or rewrite it when the server sends the whole file)."""
    from tqdm.auto import tqdm

    request = urllib.request.Request(entry.url, headers={"User-Agent": "tlhelpers-bundle"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        status = getattr(response, "status", None)
        content_range = response.headers.get("Content-Range", "") or ""
        if status != 206 or not content_range.startswith(f"bytes {offset}-"):
            offset = 0  # the whole file came (200, or a file:// URL): start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else entry.size
        with open(part, "ab" if offset else "wb") as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=Path(entry.dest).name, disable=not progress, leave=False,
        ) as bar:
            got = 0
            for block in iter(lambda: response.read(chunk), b""):
                out.write(block)
                bar.update(len(block))
                got += len(block)
    if length and length.isdigit() and got < int(length):  # read(n) ends quietly when the connection drops
        raise ConnectionError(f"the connection closed after {offset + got:,} of {offset + int(length):,} bytes")


def check(folder: str | Path, entries: Iterable[ManifestEntry]) -> list[tuple[ManifestEntry, str]]:
    """What the bundle folder holds, file by file (reads every present file to verify its checksum).

    Args:
        folder: the bundle folder.
        entries: the files it should hold.

    Returns:
        ``(entry, status)`` pairs, status one of :data:`STATUSES`: ``"present"`` (checksum matches),
        ``"corrupt"`` (the file is there, its checksum differs), ``"partial"`` (only an unfinished
        ``.part``) or ``"missing"``.
    """
    report = []
    for entry in entries:
        final = Path(folder) / entry.dest
        if final.is_file():
            status = "present" if verified(final, entry) else "corrupt"
        else:
            status = "partial" if _part(final).is_file() else "missing"
        report.append((entry, status))
    return report


def _size(n_bytes: int | None) -> str:
    if n_bytes is None:
        return "not recorded"
    if n_bytes >= 2**30:
        return f"{n_bytes / 2**30:.2f} GiB"
    return f"{n_bytes / 2**20:.1f} MiB" if n_bytes >= 2**20 else f"{n_bytes / 2**10:.1f} KiB"


def table(rows: Sequence[tuple[ManifestEntry, str]]) -> str:
    """Rows of ``(entry, status)`` as an aligned text table: status, size, name, where it goes."""
    lines = [(status, _size(e.size), e.name, e.dest) for e, status in rows]
    widths = [max([len(h), *(len(line[i]) for line in lines)]) for i, h in enumerate(("status", "size", "name"))]
    head = ("status", "size", "name", "file")
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line[:3], widths, strict=False)) + "  " + line[3]
                     for line in (head, *lines))


def total_size(entries: Sequence[ManifestEntry]) -> str:
    """The sum of the recorded sizes, e.g. ``"1.6 GiB (3 files of 12 not recorded)"``."""
    unknown = sum(e.size is None for e in entries)
    known = _size(sum(e.size or 0 for e in entries)) if unknown < len(entries) else "not recorded"
    return known + (f" (sizes of {unknown} of {len(entries)} files not recorded)" if unknown and known != "not recorded"
                    else "")


def exports(folder: str | Path) -> list[str]:
    """The two shell lines that point the notebooks at the bundle."""
    root = Path(folder).resolve()
    return [f"export TLH_DATA={shlex.quote(str(root / 'data'))}", f"export TORCH_HOME={shlex.quote(str(root / 'torch'))}"]


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (1: a download failed, or ``--check`` found a file not present)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=BUDGETS, default="laptop",
                        help="whose files: laptop and full read the same ones, reduced none (default laptop)")
    parser.add_argument("--folder", default="classroom-bundle", help="the bundle folder (default classroom-bundle)")
    parser.add_argument("--check", action="store_true", help="report what is present, missing, corrupt or partial")
    parser.add_argument("--manifest", help="a JSON list of files to use instead of the course's (see load_manifest)")
    parser.add_argument("--benchmarks", action="store_true", help="also the datasets only the benchmarks read")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    entries = load_manifest(args.manifest) if args.manifest else manifest(args.budget, args.benchmarks)
    if not entries and args.manifest:
        print(f"{args.manifest} lists no files. Nothing to do.")
        return 0
    if not entries:
        print(f"The {args.budget} budget needs no files: its data is generated in-process. Nothing to download.")
        return 0
    folder = Path(args.folder)
    if args.check:
        report = check(folder, entries)
        print(table(report))
        bad = [e.dest for e, s in report if s != "present"]
        counts = ", ".join(f"{sum(s == k for _, s in report)} {k}" for k in STATUSES)
        print(f"{folder}: {counts}." + (" Run without --check to download the rest." if bad else ""))
        return 1 if bad else 0

    print(f"{len(entries)} files, {total_size(entries)}, into {folder}/")
    failures: list[str] = []
    rows: list[tuple[ManifestEntry, str]] = []
    for entry in entries:
        try:
            download(entry, folder, progress=not args.no_progress)
        except (OSError, ChecksumError) as err:  # go on with the other files
            failures.append(str(err))
            rows.extend(check(folder, [entry]))
        else:
            rows.append((entry, "present"))
    print(table(rows))
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    print("Done. Point the notebooks at the bundle with:")
    print("\n".join(exports(folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
