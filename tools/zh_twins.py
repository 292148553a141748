"""Keep the Chinese twins in ``notebooks/zh/`` in step with the English notebooks in ``notebooks/``.

A twin has the English notebook's cells in the English order and with the English ids. Code (and raw)
cells are copied from English byte for byte, outputs stripped, so the setup cell that
``tools/sync_notebooks.py`` writes stays identical. Markdown cells are paired with the English ones by
cell id: a twin keeps the Chinese source of its cell with the same id; an English markdown cell with no
Chinese partner becomes a placeholder, ``<!-- TODO: translate -->`` followed by the English text, so
translators see every new cell. Chinese cells whose English cell was removed are dropped (and reported).
The Open-in-Colab badge of a twin points at ``notebooks/zh/<name>``.

Usage:
    python tools/zh_twins.py [NAME ...]          # rebuild the twins (creating missing ones), print what changed
    python tools/zh_twins.py --check [NAME ...]  # print the problems, exit 1 if there are any
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TODO = "<!-- TODO: translate -->"
METADATA_KEY = "tlhelpers_zh"

_CJK_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]")
_URL_RE = re.compile(r"/blob/[^/)]+/notebooks/(zh/)?([^/)]+\.ipynb)\)")
# what a markdown cell may contain without being translated: code, links, math, HTML, URLs, punctuation
_UNTRANSLATABLE_RES = [
    re.compile(r"```.*?(```|\Z)", re.S),
    re.compile(r"~~~.*?(~~~|\Z)", re.S),
    re.compile(r"<!--.*?-->", re.S),
    re.compile(r"\$\$.*?\$\$", re.S),
    re.compile(r"\\\[.*?\\\]", re.S),
    re.compile(r"\\\(.*?\\\)", re.S),
    re.compile(r"(?<!\\)\$[^$]+?(?<!\\)\$", re.S),
    re.compile(r"`[^`]*`"),
    re.compile(r"!?\[[^\]]*\]\([^)]*\)"),
    re.compile(r"<[^>]+>"),
    re.compile(r"https?://\S+"),
]
_LETTER_RE = re.compile(r"[^\W\d_]")


@functools.lru_cache(maxsize=1)
def _sync_notebooks() -> ModuleType:
    """``tools/sync_notebooks.py``, loaded once (it owns the badge and the repository address)."""
    spec = importlib.util.spec_from_file_location("sync_notebooks", ROOT / "tools" / "sync_notebooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def zh_badge(name: str) -> str:
    """The Open-in-Colab badge of the Chinese twin of notebook ``name``.

    Args:
        name: the English notebook's file name, e.g. ``"01_finetuning_resnet50.ipynb"``.

    Returns:
        The markdown of ``tools/sync_notebooks.py``'s badge, pointing at ``notebooks/zh/<name>``.

    Raises:
        ValueError: if the English badge does not end in ``notebooks/<name>``.
    """
    english = _sync_notebooks().badge(name)
    tail = f"/notebooks/{name})"
    if not english.endswith(tail):
        raise ValueError(f"the English badge {english!r} does not end in {tail!r}; update zh_badge to its new form.")
    return english[: -len(tail)] + f"/notebooks/zh/{name})"


def _text(cell: dict) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def _like(text: str, template: Any) -> str | list[str]:
    """``text`` stored the way ``template`` (an English cell's source) is: a string or a list of lines."""
    if isinstance(template, str):
        return text
    return text.splitlines(keepends=True)


def has_cjk(text: str) -> bool:
    """Whether ``text`` contains a Chinese (CJK ideograph) character.

    Args:
        text: any text.

    Returns:
        True if at least one CJK ideograph occurs in ``text``.
    """
    return _CJK_RE.search(text) is not None


def needs_translation(text: str) -> bool:
    """Whether a markdown cell has prose to translate: anything left once code, links, math and punctuation go.

    Args:
        text: the markdown source.

    Returns:
        False for cells that are only a formula, a code block, a link or a table of numbers.
    """
    for pattern in _UNTRANSLATABLE_RES:
        text = pattern.sub(" ", text)
    return _LETTER_RE.search(text) is not None


def _name_of(english_nb: dict, zh_nb: dict | None, name: str | None) -> str:
    if name:
        return name
    source = ((zh_nb or {}).get("metadata", {}).get(METADATA_KEY) or {}).get("source")
    if source:
        return str(source)
    for cell in english_nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            badge = _sync_notebooks().BADGE_RE.search(_text(cell))
            url = _URL_RE.search(badge.group(0)) if badge else None
            if url:
                return url.group(2)
    raise ValueError("cannot tell which English notebook this twin belongs to; pass name='<file name>.ipynb'.")


def english_hash(text: str) -> str:
    """What a translation was made from: a short hash of the English text, without its generated parts
    (the Colab badge and the **Run time** paragraph change without anything to translate)."""
    sync = _sync_notebooks()
    stable = re.sub(r"\n\s*\n+", "\n\n", sync.RUN_TIME_RE.sub("", sync.BADGE_RE.sub("", text))).strip()
    return hashlib.sha1(stable.encode("utf-8")).hexdigest()[:12]


def _translated_from(cell: dict) -> str | None:
    return (cell.get("metadata", {}).get(METADATA_KEY) or {}).get("en")


def _with_zh_badge(text: str, name: str) -> str:
    return _sync_notebooks().BADGE_RE.sub(lambda _: zh_badge(name), text)


def _placeholder(english_cell: dict, name: str) -> str | list[str]:
    text = TODO + "\n" + _with_zh_badge(_text(english_cell), name)
    return _like(text, english_cell.get("source", ""))


def sync_twin(english_nb: dict, zh_nb: dict | None, name: str | None = None, accept: bool = False) -> tuple[dict, list[str]]:
    """The twin of ``english_nb`` that keeps the translations of ``zh_nb``, and what changed.

    Args:
        english_nb: the English notebook (nbformat 4.5, every cell with an ``id``).
        zh_nb: the current Chinese twin, or None to build one from scratch (all markdown TODO).
        name: the English notebook's file name; by default read from ``zh_nb``'s metadata or the English badge.
        accept: record the current English text as what every translated cell was made from (after updating
            the Chinese of cells whose English changed).

    Returns:
        ``(twin, changes)``: the new twin notebook and one line per change from ``zh_nb``
        (added, dropped, updated or reordered cells, refreshed placeholders, metadata).

    Raises:
        ValueError: if an English cell has no ``id`` or two share one, or the file name cannot be told.
    """
    name = _name_of(english_nb, zh_nb, name)
    english_cells = english_nb.get("cells", [])
    ids = [cell.get("id") for cell in english_cells]
    if not all(ids) or len(set(ids)) != len(ids):
        raise ValueError(f"{name}: every English cell needs a unique id; normalise it with nbformat.validator.normalize.")
    old_cells = (zh_nb or {}).get("cells", [])
    old = {cell.get("id"): cell for cell in old_cells}
    changes = []
    cells = []
    for english in english_cells:
        cell_id, kind = english["id"], english["cell_type"]
        before = old.get(cell_id)
        if kind == "markdown":
            cell = copy.deepcopy(english)
            if before is not None and before.get("cell_type") == "markdown" and TODO not in _text(before):
                cell["source"] = _like(_with_zh_badge(_text(before), name), before.get("source", ""))
                # the English text this translation was made from: kept, or recorded once (accept=True:
                # the translator has brought the Chinese up to date with the current English)
                made_from = None if accept else _translated_from(before)
                cell["metadata"] = {**cell.get("metadata", {}),
                                    METADATA_KEY: {"en": made_from or english_hash(_text(english))}}
            else:
                cell["source"] = _placeholder(english, name)
        elif kind == "code":
            cell = {"cell_type": "code", "execution_count": None, "id": cell_id,
                    "metadata": copy.deepcopy(english.get("metadata", {})), "outputs": [],
                    "source": copy.deepcopy(english.get("source", ""))}
        else:
            cell = copy.deepcopy(english)
        cells.append(cell)
        if before is None:
            what = " (TODO: translate)" if kind == "markdown" else ""
            changes.append(f"added {kind} cell {cell_id}{what}")
        elif before != cell:
            if kind == "markdown" and TODO in _text(cell):
                changes.append(f"refreshed the TODO placeholder of cell {cell_id} from the English text")
            elif kind == "markdown":
                changes.append(f"updated markdown cell {cell_id} (Colab badge or metadata)")
            else:
                changes.append(f"updated {kind} cell {cell_id} from English")
    english_ids = set(ids)
    for cell in old_cells:
        if cell.get("id") not in english_ids:
            changes.append(f"dropped Chinese cell {cell.get('id')}: its English cell no longer exists")
    kept = [cell.get("id") for cell in old_cells if cell.get("id") in english_ids]
    if kept != [cell_id for cell_id in ids if cell_id in old]:
        changes.append("reordered the cells to the English order")
    metadata: dict[str, Any] = {}
    for key in ("kernelspec", "language_info"):
        if key in english_nb.get("metadata", {}):
            metadata[key] = copy.deepcopy(english_nb["metadata"][key])
    metadata[METADATA_KEY] = {"source": name}
    if zh_nb is not None and zh_nb.get("metadata") != metadata:
        changes.append("updated the notebook metadata")
    twin = {"cells": cells, "metadata": metadata, "nbformat": english_nb.get("nbformat", 4),
            "nbformat_minor": english_nb.get("nbformat_minor", 5)}
    return twin, changes


def build_twin(english_nb: dict, zh_nb: dict | None, name: str | None = None) -> dict:
    """The Chinese twin of ``english_nb``, keeping the translated markdown of ``zh_nb``.

    Args:
        english_nb: the English notebook.
        zh_nb: the current twin, or None to start from scratch.
        name: the English notebook's file name; by default read from ``zh_nb`` or the English badge.

    Returns:
        The twin notebook; see :func:`sync_twin` (which also says what changed).

    Raises:
        ValueError: as :func:`sync_twin`.
    """
    return sync_twin(english_nb, zh_nb, name)[0]


def _first_difference(english: str, twin: str) -> str:
    a, b = english.splitlines(), twin.splitlines()
    for number, (x, y) in enumerate(zip(a, b), start=1):
        if x != y:
            return f"line {number}: English {x!r}, twin {y!r}"
    number = min(len(a), len(b)) + 1
    if len(a) != len(b):
        longer, who = (a, "English") if len(a) > len(b) else (b, "twin")
        return f"line {number}: only the {who} has {longer[number - 1]!r}"
    return "line endings or the last newline differ"


def check_twin(english_nb: dict, zh_nb: dict, name: str | None = None) -> list[str]:
    """The problems of the Chinese twin ``zh_nb`` of ``english_nb``, one line each (empty: consistent).

    Args:
        english_nb: the English notebook.
        zh_nb: its Chinese twin.
        name: the English notebook's file name; by default read from ``zh_nb``'s metadata or the English badge.

    Returns:
        One line per problem: a code cell that differs from English (its id and the first differing line),
        a missing or extra cell, cells out of order, an English markdown cell without a Chinese partner,
        a cell still marked TODO, a markdown cell with prose but no Chinese, outputs, a Colab badge that
        does not point at the twin, metadata that does not name the English notebook.
    """
    problems = []
    try:
        name = _name_of(english_nb, zh_nb, name)
    except ValueError as error:
        problems.append(str(error))
        name = None
    english_cells = english_nb.get("cells", [])
    zh_cells = zh_nb.get("cells", [])
    zh_by_id = {cell.get("id"): cell for cell in zh_cells}
    english_ids = [cell.get("id") for cell in english_cells]
    zh_ids = [cell.get("id") for cell in zh_cells]
    if len(set(zh_ids)) != len(zh_ids) or not all(zh_ids):
        problems.append("twin cells need unique ids; rebuild with `python tools/zh_twins.py`")
    for english in english_cells:
        cell_id, kind = english.get("id"), english.get("cell_type")
        twin = zh_by_id.get(cell_id)
        if twin is None:
            what = f"English markdown cell {cell_id} has no Chinese partner" if kind == "markdown" else f"missing {kind} cell {cell_id}"
            problems.append(f"{what}; run `python tools/zh_twins.py`")
            continue
        if twin.get("cell_type") != kind:
            problems.append(f"cell {cell_id} is {twin.get('cell_type')} in the twin but {kind} in English")
            continue
        if kind != "markdown":
            if _text(twin) != _text(english):
                problems.append(f"{kind} cell {cell_id} differs from English at "
                                f"{_first_difference(_text(english), _text(twin))}; edit the English notebook, then rebuild")
            if twin.get("metadata", {}) != english.get("metadata", {}):
                problems.append(f"{kind} cell {cell_id}'s metadata differs from English; run `python tools/zh_twins.py`")
            if kind == "code" and (twin.get("outputs") or twin.get("execution_count") is not None):
                problems.append(f"code cell {cell_id} has outputs or an execution count; strip them")
            continue
        text = _text(twin)
        made_from = _translated_from(twin)
        if TODO not in text and made_from is not None and made_from != english_hash(_text(english)):
            problems.append(f"markdown cell {cell_id}: its English text changed since it was translated; update the "
                            f"Chinese, then `python tools/zh_twins.py --accept {name or 'NAME'}`")
        elif TODO not in text and made_from is None:
            problems.append(f"markdown cell {cell_id} does not record the English text it translates; "
                            "run `python tools/zh_twins.py`")
        if TODO in text:
            problems.append(f"markdown cell {cell_id} is still marked {TODO}")
        elif needs_translation(text) and not has_cjk(text):
            problems.append(f"markdown cell {cell_id} has no Chinese text (untranslated?)")
        elif needs_translation(text) and text == _text(english):
            problems.append(f"markdown cell {cell_id} is the English text unchanged (untranslated?)")
        badges = _sync_notebooks().BADGE_RE.findall(text)
        if name is not None:
            wrong = [b for b in badges if b != zh_badge(name)]
            if wrong:
                problems.append(f"markdown cell {cell_id}: the Colab badge points at {wrong[0]!r}, not the twin "
                                f"notebooks/zh/{name}; run `python tools/zh_twins.py`")
        if not badges and _sync_notebooks().BADGE_RE.search(_text(english)):
            problems.append(f"markdown cell {cell_id} lost the Colab badge of its English cell")
    for cell_id in zh_ids:
        if cell_id not in set(english_ids):
            problems.append(f"extra cell {cell_id}: its English cell no longer exists; run `python tools/zh_twins.py`")
    common = set(english_ids) & set(zh_ids)
    for position, (a, b) in enumerate(zip([i for i in english_ids if i in common], [i for i in zh_ids if i in common])):
        if a != b:
            problems.append(f"cell order differs from English from common cell {position}: English {a}, twin {b}")
            break
    metadata = zh_nb.get("metadata", {})
    source = (metadata.get(METADATA_KEY) or {}).get("source")
    if name is not None and source != name:
        problems.append(f"metadata {METADATA_KEY}.source is {source!r}, not {name!r}")
    if metadata.get("kernelspec") != english_nb.get("metadata", {}).get("kernelspec"):
        problems.append("the kernelspec differs from English")
    return problems


def _dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _select(english: list[Path], names: list[str]) -> list[Path]:
    by_name = {path.name: path for path in english} | {path.stem: path for path in english}
    unknown = [n for n in names if Path(n).name not in by_name]
    if unknown:
        raise SystemExit(f"no English notebook {', '.join(unknown)}; choose from {', '.join(p.name for p in english)}.")
    return [by_name[Path(n).name] for n in names] if names else english


def main(argv: list[str] | None = None, notebooks: Path | None = None) -> int:
    """Rebuild the twins or, with ``--check``, report their problems.

    Args:
        argv: the command line (default ``sys.argv[1:]``).
        notebooks: the English notebooks' folder (default ``<repository>/notebooks``); twins live in its ``zh/``.

    Returns:
        The exit status: 1 if ``--check`` found problems, else 0.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report twins out of sync, change nothing")
    parser.add_argument("--accept", action="store_true",
                        help="the Chinese text is up to date: record the current English text as its source")
    parser.add_argument("names", nargs="*", metavar="NAME", help="English notebook file names (default: all)")
    args = parser.parse_args(argv)
    folder = ROOT / "notebooks" if notebooks is None else Path(notebooks)
    zh_folder = folder / "zh"
    english_paths = sorted(folder.glob("*.ipynb"))
    selected = _select(english_paths, args.names)
    problems = []
    for path in selected:
        twin_path = zh_folder / path.name
        english_nb = json.loads(path.read_text(encoding="utf-8"))
        label = f"zh/{path.name}"
        if not all(cell.get("id") for cell in english_nb.get("cells", [])):
            problems.append(f"{path.name}: some cells have no id; save it as nbformat 4.5 (nbformat.validator.normalize)")
            continue
        if not twin_path.exists():
            if args.check:
                problems.append(f"{label}: missing; run `python tools/zh_twins.py {path.name}`")
                continue
            twin = build_twin(english_nb, None, path.name)
            zh_folder.mkdir(parents=True, exist_ok=True)
            twin_path.write_text(_dump(twin), encoding="utf-8")
            todo = sum(TODO in _text(c) for c in twin["cells"] if c["cell_type"] == "markdown")
            print(f"{label}: created ({len(twin['cells'])} cells, {todo} markdown cells to translate)")
            continue
        text = twin_path.read_text(encoding="utf-8")
        zh_nb = json.loads(text)
        if args.check:
            problems += [f"{label}: {line}" for line in check_twin(english_nb, zh_nb, path.name)]
            if _dump(zh_nb) != text:
                problems.append(f"{label}: not in the repository's JSON layout; run `python tools/zh_twins.py`")
            continue
        twin, changes = sync_twin(english_nb, zh_nb, path.name, accept=args.accept)
        if _dump(twin) != text:
            twin_path.write_text(_dump(twin), encoding="utf-8")
            for line in changes or ["rewrote the JSON layout"]:
                print(f"{label}: {line}")
    if not args.names:
        english_names = {path.name for path in english_paths}
        for orphan in sorted(zh_folder.glob("*.ipynb")):
            if orphan.name not in english_names:
                line = f"zh/{orphan.name}: no English notebook {orphan.name}; delete or rename the twin"
                if args.check:
                    problems.append(line)
                else:
                    print(line)
    if problems:
        print("\n".join(problems))
        print(f"{len(problems)} problem(s) in the Chinese twins or their English notebooks.")
        return 1
    if args.check:
        print(f"{len(selected)} Chinese twin(s) consistent with their English notebooks.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
