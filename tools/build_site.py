"""Build the course's static website: every notebook executed, with its outputs, plus an index and a results page.

Why nbconvert: it is the lightest well-kept tool that renders a notebook with all its outputs (text,
tables, embedded PNG figures, saved widget state) and its LaTeX (MathJax). It ships with Jupyter, which
the course already installs (``.[course]``), and is maintained by the Jupyter project itself, so the site
needs no new dependency and no second toolchain (Jupyter Book, MkDocs or Quarto would each add one, with
their own configuration, for what is seven pages and an index). Its ``lab`` template gives the pages
JupyterLab's look and loads MathJax from a CDN when a reader opens them; building needs no network.
Notebooks run with nbclient (as ``benchmarks/notebook_times.py`` does), the results page renders
:func:`tlhelpers.course.results.results_markdown` with mistune (a dependency of nbconvert).

What it writes into ``--out`` (default ``site/``, git-ignored):

- ``<notebook stem>.html``: each notebook run top to bottom in a fresh ``python3`` kernel from
  ``notebooks/`` (as a student runs it), with a banner naming the budget, the date and the run time;
- ``index.html``: the course title, the chapters with links, the build's budget and date, and a link
  to the repository (``[project.urls] Repository`` in ``pyproject.toml``);
- ``results.html``: the benchmark results table, from ``benchmarks/results/*.json``.

Every notebook runs at one budget: ``--budget`` (sets ``TLH_BUDGET`` for the kernels), else the
course's own choice here (``tlhelpers.core.runtime.select_budget()``: ``TLH_BUDGET``/``TLH_REDUCED``,
else automatic). ``--no-execute`` renders the notebooks as committed (outputs stripped), in seconds.
``--only NAME ...`` builds some chapters (the other pages are kept). A notebook that fails still gets
its page (with the error); the build goes on, names the failing cell in one line and exits with 1.

Usage:
    python tools/build_site.py                       # every notebook, at the budget chosen here
    python tools/build_site.py --budget reduced      # seconds per notebook, offline, on a CPU
    python tools/build_site.py --only 00_introduction --timeout 600
    python tools/build_site.py --no-execute          # layout check without running anything
"""

from __future__ import annotations

import argparse
import html
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "benchmarks" / "results"
SITE = ROOT / "site"
BUDGETS = ("reduced", "laptop", "full")
DEFAULT_TITLE = "Transfer Learning for Computer Vision"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 72rem; margin: 2rem auto;
       padding: 0 1rem; line-height: 1.5; color: #222; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.tlh-meta { color: #555; }
"""
_BANNER_CSS = ("margin: 0 0 1rem 0; padding: 0.5rem 1rem; background: #eef4fb; border-bottom: 1px solid #c6d8ee; "
               "font-family: system-ui, sans-serif; font-size: 0.9rem;")


@dataclass(frozen=True)
class Page:
    """One chapter's page as built.

    Attributes:
        name: the notebook's file name, e.g. ``"00_introduction.ipynb"``.
        seconds: the run time (0 when not executed).
        error: the failing cell's error in one line, or None when the notebook ran through.
    """

    name: str
    seconds: float
    error: str | None = None


def repository_url(pyproject: str | Path = ROOT / "pyproject.toml") -> str:
    """The repository's address, ``[project.urls] Repository`` in ``pyproject.toml`` (the placeholder).

    Raises:
        ValueError: when ``pyproject.toml`` names no repository.
    """
    found = re.search(r'^Repository\s*=\s*"([^"]+)"', Path(pyproject).read_text(encoding="utf-8"), re.M)
    if found is None:
        raise ValueError(f"{pyproject} has no Repository address; add one under [project.urls].")
    return found.group(1)


def site_url(repository: str) -> str:
    """The site's address on GitHub Pages for ``repository`` (a ``https://github.com/<owner>/<name>`` address).

    Args:
        repository: the repository's address.

    Returns:
        ``https://OWNER.github.io/NAME/``.

    Raises:
        ValueError: for an address that is not a GitHub repository's.
    """
    found = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?", repository)
    if found is None:
        raise ValueError(f"{repository!r} is not a GitHub repository address; use an https://github.com/<owner>/<name> address.")
    return f"https://{found.group(1)}.github.io/{found.group(2)}/"


def course_title(readme: str | Path = ROOT / "README.md") -> str:
    """The course's title: the README's first ``# `` heading, or the English title when there is none."""
    path = Path(readme)
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return DEFAULT_TITLE


def chapter_title(nb: Any, fallback: str) -> str:
    """A notebook's title: its first Markdown heading (without the ``#``), else ``fallback``."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.lstrip().startswith("#"):
                    return line.lstrip().lstrip("#").strip()
    return fallback


def resolve_budget(requested: str | None = None) -> tuple[str, str]:
    """The budget every notebook runs at, and why; sets ``TLH_BUDGET`` so the kernels inherit it.

    Args:
        requested: ``"reduced"``, ``"laptop"``, ``"full"``, or None/``"auto"`` for the course's choice here
            (:func:`tlhelpers.core.runtime.select_budget`).

    Returns:
        ``(name, reason)``.

    Raises:
        ValueError: for a budget that is not one of the above.
    """
    from tlhelpers.core.runtime import select_budget

    if requested and requested != "auto":
        if requested not in BUDGETS:
            raise ValueError(f"--budget {requested!r} is not a budget; use reduced, laptop, full or auto.")
        choice = (requested, "set by --budget")
    else:
        picked = select_budget()
        choice = (picked.name, picked.reason)
    os.environ["TLH_BUDGET"] = choice[0]
    return choice


def select_notebooks(notebooks: Sequence[Path], only: Sequence[str] | None) -> list[Path]:
    """All of ``notebooks``, or those ``only`` names (file name or stem), in order: the choice
    ``benchmarks/notebook_times.py --only`` makes, from the same function.

    Raises:
        ValueError: for a name that is no notebook, listing the notebooks.
    """
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from notebook_times import select_notebooks as select
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return select(notebooks, only)


def _one_line(text: str, limit: int = 300) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # ANSI colours of a traceback
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def execute_notebook(nb: Any, cwd: str | Path, timeout: int = 1800) -> str | None:
    """Run ``nb`` in place in a fresh ``python3`` kernel started in ``cwd``; the outputs are stored in it.

    Args:
        nb: the notebook (``nbformat.NotebookNode``), changed in place.
        cwd: the kernel's working folder (the notebook's own folder).
        timeout: seconds one cell may run.

    Returns:
        None when every cell ran, else the error in one line: ``cell N: Name: message`` (N counts code
        cells from 1), the cells before it keep their outputs.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute()
    except CellExecutionError as exc:
        code = [c for c in nb.cells if c.cell_type == "code"]
        where = next((f"cell {i}: " for i, c in enumerate(code, 1)
                      if any(o.get("output_type") == "error" for o in c.get("outputs", []))), "")
        return _one_line(f"{where}{exc.ename}: {exc.evalue}")
    except Exception as exc:  # noqa: BLE001 - a timeout or a dead kernel is a failed page too, not a crash
        return _one_line(f"{type(exc).__name__}: {exc}")
    return None


def banner(*, title: str, budget: str, date: str, seconds: float | None, source: str | None, error: str | None) -> str:
    """The HTML bar at the top of a chapter's page: how it was run, and links to the index and results.

    Args:
        title: the course's title.
        budget: the budget the notebook ran at, e.g. ``"reduced"``; ``"not executed"`` for ``--no-execute``.
        date: the build's date (UTC).
        seconds: the run time, or None when not executed.
        source: the notebook's address in the repository, or None.
        error: the failing cell's error in one line, or None.
    """
    ran = (f"Executed at the <b>{html.escape(budget)}</b> budget on {html.escape(date)} in {seconds:.0f} s."
           if seconds is not None else "Not executed: rendered as committed, without outputs.")
    links = ['<a href="index.html">all chapters</a>', '<a href="results.html">results</a>']
    if source:
        links.append(f'<a href="{html.escape(source)}">notebook source</a>')
    failed = (f'<br><b style="color:#a00">This notebook failed: {html.escape(error)}</b>' if error else "")
    return (f'<div class="tlh-banner" style="{_BANNER_CSS}"><b>{html.escape(title)}</b> · {ran} · '
            f"{' · '.join(links)}{failed}</div>")


def render_notebook(nb: Any, name: str, banner_html: str = "") -> str:
    """``nb`` as a standalone HTML page (nbconvert, ``lab`` template): outputs, embedded figures, MathJax.

    Args:
        nb: the notebook.
        name: the page's title.
        banner_html: HTML put at the top of the page's body.

    Returns:
        The page's HTML.
    """
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb, resources={"metadata": {"name": name}})
    if banner_html:
        body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + "\n" + banner_html, body, count=1)
    return body


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def index_html(
    chapters: Sequence[tuple[str, str, bool]], *, title: str, budget: str, date: str, repository: str
) -> str:
    """The site's front page.

    Args:
        chapters: ``(page file name, chapter title, built)`` per chapter, in order; a chapter not built is
            listed without a link.
        title: the course's title.
        budget: the budget the build ran the notebooks at (or ``"not executed"``).
        date: the build's date (UTC).
        repository: the repository's address.

    Returns:
        The page's HTML.
    """
    items = []
    for page, name, built in chapters:
        label = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(name))  # a heading's inline code
        items.append(f'<li><a href="{html.escape(page)}">{label}</a></li>' if built
                     else f'<li>{label} <span class="tlh-meta">(not built yet)</span></li>')
    body = (f"<h1>{html.escape(title)}</h1>\n"
            f"<p>Every chapter's notebook, run top to bottom with all its outputs.</p>\n"
            f"<h2>Chapters</h2>\n<ol>\n" + "\n".join(items) + "\n</ol>\n"
            f'<p><a href="results.html">Benchmark results</a></p>\n'
            f'<p class="tlh-meta">Built on {html.escape(date)} at the <b>{html.escape(budget)}</b> budget. '
            f'Source, setup and the notebooks to run yourself: <a href="{html.escape(repository)}">'
            f"{html.escape(repository)}</a></p>")
    return _page(title, body)


def results_html(folder: str | Path, *, title: str, repository: str) -> str:
    """The results page: the table of :func:`tlhelpers.course.results.results_markdown` of ``folder``'s JSON.

    Args:
        folder: the folder of benchmark JSON files (``benchmarks/results``).
        title: the course's title.
        repository: the repository's address.

    Returns:
        The page's HTML.

    Raises:
        ValueError: for a JSON file no reader knows (from :func:`tlhelpers.course.results.load_results`).
    """
    import mistune

    from tlhelpers.course.results import load_results, results_markdown

    rows = load_results(folder)
    table = mistune.create_markdown(escape=True, plugins=["table"])(results_markdown(rows))
    body = (f'<p><a href="index.html">← all chapters</a></p>\n<h1>Results</h1>\n'
            f'<p class="tlh-meta">Generated from the benchmarks\' JSON files (<code>benchmarks/results/</code> in '
            f'<a href="{html.escape(repository)}">the repository</a>; <code>make results</code> runs them again). '
            f"The paper's number stands beside ours for a full-mode run of the paper's setting.</p>\n{table}")
    return _page(f"Results · {title}", body)


def build_site(
    notebooks: Sequence[Path],
    out: str | Path,
    *,
    execute: bool = True,
    budget: str = "reduced",
    timeout: int = 1800,
    results: str | Path = RESULTS,
    repository: str | None = None,
    title: str | None = None,
    all_notebooks: Sequence[Path] | None = None,
    date: str | None = None,
) -> list[Page]:
    """Write the pages of ``notebooks``, the index and the results page into ``out``.

    Each notebook runs in its own folder (when ``execute``); ``TLH_BUDGET`` must already hold ``budget``
    (see :func:`resolve_budget`) for the kernels to run at it. A failing notebook still gets its page.

    Args:
        notebooks: the notebooks to build.
        out: the site's folder (made if missing).
        execute: run the notebooks; False renders them as they are.
        budget: the budget, written on the pages.
        timeout: seconds one cell may run.
        results: the folder of benchmark JSON files.
        repository: the repository's address; None reads ``pyproject.toml``.
        title: the course's title; None reads the README.
        all_notebooks: every chapter the index lists (default ``notebooks``).
        date: the build's date; None: today (UTC).

    Returns:
        One :class:`Page` per notebook, in order.
    """
    import nbformat

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    repository = repository or repository_url()
    title = title or course_title()
    date = date or datetime.now(timezone.utc).strftime("%Y-%m-%d")
    pages = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        error, seconds = None, None
        if execute:
            t0 = time.perf_counter()
            error = execute_notebook(nb, path.parent, timeout)
            seconds = round(time.perf_counter() - t0, 1)
        source = f"{repository}/blob/main/{path.parent.name}/{path.name}"
        top = banner(title=title, budget=budget, date=date, seconds=seconds, source=source, error=error)
        (out / f"{path.stem}.html").write_text(render_notebook(nb, chapter_title(nb, path.stem), top), encoding="utf-8")
        pages.append(Page(path.name, seconds or 0.0, error))
        state = f"FAILED: {error}" if error else ("ok" if execute else "rendered")
        print(f"{seconds or 0.0:7.1f} s  {path.name}  {state}", flush=True)
    chapters = [(f"{p.stem}.html", chapter_title(nbformat.read(p, as_version=4), p.stem), (out / f"{p.stem}.html").exists())
                for p in (all_notebooks if all_notebooks is not None else notebooks)]
    shown = budget if execute else "not executed"
    (out / "index.html").write_text(index_html(chapters, title=title, budget=shown, date=date, repository=repository),
                                    encoding="utf-8")
    (out / "results.html").write_text(results_html(results, title=title, repository=repository), encoding="utf-8")
    return pages


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--budget", choices=(*BUDGETS, "auto"), default=None,
                        help="the budget the notebooks run at (sets TLH_BUDGET); default: what the course chooses here")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME",
                        help="build these notebooks only (file name or stem); the other pages are kept")
    parser.add_argument("--no-execute", action="store_true", help="render the notebooks as committed, without running")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds one cell may run (default 1800)")
    parser.add_argument("--out", type=Path, default=SITE, help="the site's folder (default site/)")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help="the notebooks' folder (default notebooks/)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the benchmarks' JSON folder")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the site; the exit status: 0, or 1 when a notebook failed (each named with its error)."""
    args = parse_args(argv)
    every = sorted(Path(args.notebooks).glob("*.ipynb"))
    try:
        chosen = select_notebooks(every, args.only)
        if not chosen:
            raise ValueError(f"no notebooks in {args.notebooks}; pass --notebooks DIR.")
        budget, reason = resolve_budget(args.budget) if not args.no_execute else ("not executed", "--no-execute")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Budget: {budget} ({reason}); {len(chosen)} notebook(s) -> {args.out}", flush=True)
    t0 = time.perf_counter()
    pages = build_site(chosen, args.out, execute=not args.no_execute, budget=budget, timeout=args.timeout,
                       results=args.results, all_notebooks=every)
    failed = [p for p in pages if p.error]
    for p in failed:
        print(f"FAILED {p.name}: {p.error}", file=sys.stderr)
    print(f"site built in {time.perf_counter() - t0:.0f} s: {Path(args.out) / 'index.html'}"
          f"{f'; {len(failed)} notebook(s) failed' if failed else ''}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
