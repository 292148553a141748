"""tools/build_site.py: a chapter's page with its outputs, figures and math; the index; the results page.

The site is built once, offline, from two tiny notebooks written here (never the course's): one that
prints, draws a matplotlib figure and has math in Markdown, and one whose second code cell raises.
The build runs with the network refused in this process and, through ``tools/offline_guard``, in
every kernel it starts.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import ipaddress
import json
import re
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
REPO = re.search(r'^Repository = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


def _tool():
    spec = importlib.util.spec_from_file_location("build_site", ROOT / "tools" / "build_site.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build_site = _tool()


def _write(path: Path, *cells) -> Path:
    nb = new_notebook(cells=list(cells), metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                  "language": "python"}})
    nbformat.write(nb, path)
    return path


def _good(folder: Path) -> Path:
    return _write(folder / "01_tiny.ipynb",
                  new_markdown_cell("# Tiny chapter\n\nThe loss grows as $x^2$ here."),
                  new_code_cell('print("hello", 6 * 7)'),
                  new_code_cell("%matplotlib inline\nimport matplotlib.pyplot as plt\n"
                                "fig, ax = plt.subplots(figsize=(2, 2))\nax.plot([1, 2, 3])\nplt.show()"))


FAKE_RESULT = {"benchmark": "engine_overhead", "overhead_ratio": 1.0371, "mode": "reduced",
               "hardware": "test CPU 9000", "date": "2024-05-06T07:08:09"}


def _is_local(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str) or host in {"localhost", ""}:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse_network(mp: pytest.MonkeyPatch, attempts: list) -> None:
    """Refuse (and record) every connection or name lookup off this machine, in this process."""
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and not _is_local(address[0]):
            attempts.append(address)
            raise ConnectionRefusedError(f"network disabled in tests ({address!r})")
        return connect(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not _is_local(host):
            attempts.append(host)
            raise socket.gaierror(socket.EAI_NONAME, f"name lookup disabled in tests ({host!r})")
        return getaddrinfo(host, *args, **kwargs)

    mp.setattr(socket.socket, "connect", guarded_connect)
    mp.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The site of the two tiny notebooks, built with the command line offline; its exit status and output."""
    tmp = tmp_path_factory.mktemp("site")
    notebooks, results, out = tmp / "notebooks", tmp / "results", tmp / "site"
    notebooks.mkdir()
    results.mkdir()
    _good(notebooks)
    _write(notebooks / "02_broken.ipynb", new_markdown_cell("# Broken `chapter`"), new_code_cell('print("before")'),
           new_code_cell('raise ValueError("deliberate\\nfailure 7")'))
    (results / "engine_overhead_reduced.json").write_text(json.dumps(FAKE_RESULT))
    log, attempts = tmp / "kernel_network_attempts.log", []
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(ROOT / "tools" / "offline_guard"))  # every kernel: no network
        mp.setenv("TLH_OFFLINE_GUARD_LOG", str(log))
        mp.setenv("TLH_BUDGET", "auto")  # build_site sets it for the kernels; restored afterwards
        _refuse_network(mp, attempts)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            rc = build_site.main(["--notebooks", str(notebooks), "--results", str(results), "--out", str(out),
                                  "--budget", "reduced", "--timeout", "60"])
    return {"rc": rc, "out": out, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(),
            "attempts": attempts, "log": log}


def test_chapter_page_shows_printed_output_embedded_figure_and_math(built):
    page = (built["out"] / "01_tiny.html").read_text()
    assert "hello 42" in page  # the output of print("hello", 6 * 7): only an executed cell has it
    pngs = re.findall(r'<img[^>]+src="data:image/png;base64,([A-Za-z0-9+/=\s]+)"', page)  # an output, not CSS
    assert len(pngs) == 1 and base64.b64decode("".join(pngs[0].split()))[:8] == b"\x89PNG\r\n\x1a\n"
    assert "$x^2$" in page  # left for MathJax to typeset
    assert "text/x-mathjax-config" in page and re.search(r"<script[^>]+src=\"[^\"]*mathjax", page, re.I)
    banner = re.search(r'<div class="tlh-banner".*?</div>', page, re.S).group(0)
    assert "<b>reduced</b>" in banner and 'href="index.html"' in banner and 'href="results.html"' in banner


def test_build_prints_each_notebook_time_and_reaches_no_network(built):
    assert re.search(r"^\s*\d+\.\d s  01_tiny\.ipynb  ok$", built["stdout"], re.M), built["stdout"]
    assert built["attempts"] == [] and not built["log"].exists()


def test_failing_notebook_fails_the_build_naming_its_cell_in_one_line(built):
    assert built["rc"] == 1
    lines = [line for line in built["stderr"].splitlines() if line.startswith("FAILED 02_broken.ipynb")]
    assert lines == ["FAILED 02_broken.ipynb: cell 2: ValueError: deliberate failure 7"], built["stderr"]
    assert "deliberate" in (built["out"] / "02_broken.html").read_text()  # its page shows the error


def test_index_lists_every_chapter_with_links_budget_date_and_repository(built):
    index = (built["out"] / "index.html").read_text()
    assert re.search(r'<a href="01_tiny\.html">Tiny chapter</a>', index)
    assert re.search(r'<a href="02_broken\.html">Broken <code>chapter</code></a>', index)
    assert index.index("01_tiny.html") < index.index("02_broken.html")
    assert f'href="{REPO}"' in index and "<b>reduced</b>" in index
    assert datetime.now(timezone.utc).strftime("%Y-%m-%d") in index


def test_results_page_has_the_json_row(built):
    page = (built["out"] / "results.html").read_text()
    rows = re.findall(r"<tr>(.*?)</tr>", page, re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r, re.S) for r in rows]
    assert ["engine", "fit() vs a bare PyTorch loop", "random tensors", "time ratio (target ≤ 1.05)", "1.037", "—",
            "reduced", "test CPU 9000", "2024-05-06"] in cells


def test_results_page_of_the_repository_has_one_row_per_result():
    from tlhelpers.course.results import load_results

    folder = ROOT / "benchmarks" / "results"
    page = build_site.results_html(folder, title="t", repository=REPO)
    assert page.count("<tr>") == len(load_results(folder)) + 1  # the header and one row each


def test_no_execute_renders_the_committed_notebook_without_a_kernel(tmp_path):
    nb = _good(tmp_path)
    pages = build_site.build_site([nb], tmp_path / "site", execute=False, repository=REPO, title="Course",
                                  results=tmp_path)  # no JSON: an empty table
    page = (tmp_path / "site" / "01_tiny.html").read_text()
    assert pages == [build_site.Page("01_tiny.ipynb", 0.0, None)]
    assert "hello 42" not in page and '<img' not in page and "Not executed" in page


def test_site_address_is_the_repository_placeholders():
    owner, name = REPO.removeprefix("https://github.com/").split("/")
    assert build_site.repository_url() == REPO
    assert build_site.site_url(REPO) == f"https://{owner}.github.io/{name}/"
    with pytest.raises(ValueError, match="not a GitHub repository"):
        build_site.site_url("https://example.com/x")


def test_only_names_unknown_notebooks():
    paths = [Path("a/00_intro.ipynb"), Path("a/01_x.ipynb")]
    assert build_site.select_notebooks(paths, ["01_x"]) == [paths[1]]
    with pytest.raises(ValueError, match="no such notebook"):
        build_site.select_notebooks(paths, ["02_y"])
