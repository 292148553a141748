"""tools/zh_twins.py: the Chinese twins keep the English code byte for byte and pair markdown by cell id."""

import copy
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NAME = "09_demo.ipynb"


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


zh = _tool("zh_twins")
sync = _tool("sync_notebooks")


def _lines(text):
    return text.splitlines(keepends=True)


def _md(cell_id, text):
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": _lines(text)}


def _code(cell_id, text):
    return {"cell_type": "code", "execution_count": None, "id": cell_id, "metadata": {}, "outputs": [],
            "source": _lines(text)}


def _english():
    return {"cells": [_md("title", f"# 9 · Demo\n\n{sync.badge(NAME)}\n\n**What you will learn**: fine-tuning (网络微调)."),
                      _code("setup", "import os\nprint('setup')"),
                      _md("prose", "We train a **small** network.\n\nThen we look at `loss`."),
                      _code("train", "x = 1\ny = x + 1\nprint(y)"),
                      _md("formula", "$$\\mathcal{L} = -\\sum_i y_i \\log p_i$$")],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


CHINESE = {"title": f"# 9 · 演示\n\n{sync.badge(NAME)}\n\n**你将学到**：网络微调。",
           "prose": "我们训练一个**小**网络。\n\n然后看 `loss`。",
           "formula": "$$\\mathcal{L} = -\\sum_i y_i \\log p_i$$"}


def _translated(english):
    """A twin of ``english`` whose markdown cells a translator has written in Chinese."""
    twin = zh.build_twin(english, None, NAME)
    for cell in twin["cells"]:
        if cell["cell_type"] == "markdown":
            cell["source"] = _lines(CHINESE[cell["id"]])
    return zh.build_twin(english, twin, NAME)  # the rebuild points the badge at the twin


def _text(cell):
    return "".join(cell["source"])


def test_zh_badge_points_at_the_twin_and_keeps_the_english_address():
    english, chinese = sync.badge(NAME), zh.zh_badge(NAME)
    assert chinese == english.replace(f"/blob/main/notebooks/{NAME})", f"/blob/main/notebooks/zh/{NAME})")
    assert chinese != english and chinese.endswith(f"notebooks/zh/{NAME})")


def test_build_from_scratch_copies_code_and_marks_every_markdown_cell_todo():
    english = _english()
    twin = zh.build_twin(english, None, NAME)
    assert [c["id"] for c in twin["cells"]] == [c["id"] for c in english["cells"]]
    assert [c["cell_type"] for c in twin["cells"]] == [c["cell_type"] for c in english["cells"]]
    for en, cell in zip(english["cells"], twin["cells"]):
        if en["cell_type"] == "code":
            assert cell["source"] == en["source"] and cell["outputs"] == [] and cell["execution_count"] is None
        else:  # the placeholder: the marker, then the English text with the badge pointing at the twin
            expected = _text(en).replace(sync.badge(NAME), zh.zh_badge(NAME))
            assert _text(cell) == zh.TODO + "\n" + expected
    assert zh.zh_badge(NAME) in _text(twin["cells"][0]) and sync.badge(NAME) not in _text(twin["cells"][0])
    assert twin["metadata"] == {**english["metadata"], "tlhelpers_zh": {"source": NAME}}
    assert (twin["nbformat"], twin["nbformat_minor"]) == (4, 5)
    problems = zh.check_twin(english, twin)
    assert len(problems) == 3 and all(zh.TODO in p for p in problems), problems


def test_name_is_read_from_the_english_badge_when_not_given():
    twin = zh.build_twin(_english(), None)
    assert twin["metadata"]["tlhelpers_zh"] == {"source": NAME}


def test_translated_twin_is_consistent_and_survives_a_rebuild():
    english = _english()
    twin = _translated(english)
    assert zh.check_twin(english, twin) == []
    assert zh.zh_badge(NAME) in _text(twin["cells"][0])
    again, changes = zh.sync_twin(english, twin)
    assert again == twin and changes == []


def test_code_edited_in_the_twin_only_is_reported_and_fixed_from_english():
    english = _english()
    twin = _translated(english)
    twin["cells"][3]["source"] = _lines("x = 1\ny = x + 2\nprint(y)")
    problems = zh.check_twin(english, twin)
    assert len(problems) == 1 and "train" in problems[0] and "line 2" in problems[0], problems
    assert "'y = x + 1'" in problems[0] and "'y = x + 2'" in problems[0]
    # the fix is to edit the English notebook and rebuild; the translations stay
    english["cells"][3]["source"] = _lines("x = 1\ny = x + 2\nprint(y)")
    rebuilt, changes = zh.sync_twin(english, twin)
    assert zh.check_twin(english, rebuilt) == []
    assert [_text(c) for c in rebuilt["cells"] if c["cell_type"] == "markdown"][1] == CHINESE["prose"]


def test_code_edited_in_english_only_is_reported_until_rebuilt():
    english = _english()
    twin = _translated(english)
    english["cells"][1]["source"] = _lines("import os\nimport sys\nprint('setup')")
    problems = zh.check_twin(english, twin)
    assert len(problems) == 1 and "setup" in problems[0] and "line 2" in problems[0], problems
    rebuilt, changes = zh.sync_twin(english, twin)
    assert changes == ["updated code cell setup from English"]
    assert zh.check_twin(english, rebuilt) == []


def test_new_english_markdown_cell_gets_a_todo_placeholder():
    english = _english()
    twin = _translated(english)
    english["cells"].insert(4, _md("new", "A new paragraph about **learning rates**."))
    assert any("new" in p and "no Chinese partner" in p for p in zh.check_twin(english, twin))
    rebuilt, changes = zh.sync_twin(english, twin)
    assert [c["id"] for c in rebuilt["cells"]] == ["title", "setup", "prose", "train", "new", "formula"]
    assert _text(rebuilt["cells"][4]) == zh.TODO + "\nA new paragraph about **learning rates**."
    assert changes == ["added markdown cell new (TODO: translate)"]
    problems = zh.check_twin(english, rebuilt)
    assert len(problems) == 1 and "new" in problems[0] and zh.TODO in problems[0], problems


def test_todo_placeholder_follows_later_english_edits():
    english = _english()
    twin = zh.build_twin(english, None, NAME)
    english["cells"][2]["source"] = _lines("We train a **tiny** network.")
    rebuilt = zh.build_twin(english, twin)
    assert _text(rebuilt["cells"][2]) == zh.TODO + "\nWe train a **tiny** network."


def test_untranslated_markdown_is_reported_but_formulas_and_code_are_not():
    english = _english()
    twin = _translated(english)
    twin["cells"][2]["source"] = _lines("We train a small network.")  # no Chinese at all
    problems = zh.check_twin(english, twin)
    assert len(problems) == 1 and "prose" in problems[0] and "no Chinese" in problems[0], problems
    twin["cells"][2]["source"] = english["cells"][0]["source"]  # English text with a Chinese gloss
    twin["cells"][0]["source"] = english["cells"][0]["source"]
    problems = zh.check_twin(english, twin)
    assert any("title" in p and "unchanged" in p for p in problems), problems
    for text in ["$$a^2 + b^2$$", "```python\nprint('hi')\n```", "[![img](x.png)](https://example.org)",
                 "| 1 | 2 |\n|---|---|\n| 3.5 | 4 |", "`fit()` — $x$, \\(y\\)."]:
        assert not zh.needs_translation(text), text
    for text in ["Only English here.", "$x$ is the input", "See [the docs](https://example.org)."]:
        assert zh.needs_translation(text) and not zh.has_cjk(text), text


def test_cell_still_marked_todo_is_reported_even_with_chinese_text():
    english = _english()
    twin = _translated(english)
    twin["cells"][2]["source"] = _lines(zh.TODO + "\n我们训练一个小网络。")
    problems = zh.check_twin(english, twin)
    assert len(problems) == 1 and "prose" in problems[0] and zh.TODO in problems[0], problems


def test_removed_english_cell_drops_its_chinese_partner():
    english = _english()
    twin = _translated(english)
    del english["cells"][2]
    problems = zh.check_twin(english, twin)
    assert len(problems) == 1 and "extra cell prose" in problems[0], problems
    rebuilt, changes = zh.sync_twin(english, twin)
    assert [c["id"] for c in rebuilt["cells"]] == ["title", "setup", "train", "formula"]
    assert changes == ["dropped Chinese cell prose: its English cell no longer exists"]
    assert zh.check_twin(english, rebuilt) == []


def test_order_badge_outputs_and_missing_cells_are_reported():
    english = _english()
    twin = _translated(english)
    swapped = copy.deepcopy(twin)
    swapped["cells"][1], swapped["cells"][3] = swapped["cells"][3], swapped["cells"][1]
    assert [p for p in zh.check_twin(english, swapped) if "order" in p], zh.check_twin(english, swapped)
    rebuilt, changes = zh.sync_twin(english, swapped)
    assert rebuilt == twin and "reordered the cells to the English order" in changes
    wrong = copy.deepcopy(twin)
    wrong["cells"][0]["source"] = _lines(CHINESE["title"])  # still the English badge
    problems = zh.check_twin(english, wrong)
    assert len(problems) == 1 and "badge" in problems[0] and "title" in problems[0], problems
    ran = copy.deepcopy(twin)
    ran["cells"][3]["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["2\n"]}]
    assert [p for p in zh.check_twin(english, ran) if "outputs" in p and "train" in p]
    short = copy.deepcopy(twin)
    del short["cells"][3]
    assert [p for p in zh.check_twin(english, short) if "missing code cell train" in p]


def test_cli_creates_twins_then_checks_them(tmp_path, capsys):
    (tmp_path / NAME).write_text(json.dumps(_english(), indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    assert zh.main([], notebooks=tmp_path) == 0
    assert "created" in capsys.readouterr().out
    twin_path = tmp_path / "zh" / NAME
    assert zh.main(["--check"], notebooks=tmp_path) == 1
    assert capsys.readouterr().out.count(zh.TODO) == 3
    twin = _translated(_english())
    twin_path.write_text(json.dumps(twin, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    assert zh.main(["--check", NAME], notebooks=tmp_path) == 0
    assert "1 Chinese twin(s) consistent" in capsys.readouterr().out
    before = twin_path.read_text(encoding="utf-8")
    assert zh.main([], notebooks=tmp_path) == 0 and twin_path.read_text(encoding="utf-8") == before
    (tmp_path / "zh" / "99_gone.ipynb").write_text(before)
    assert zh.main(["--check"], notebooks=tmp_path) == 1
    assert "no English notebook 99_gone.ipynb" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        zh.main(["--check", "nope.ipynb"], notebooks=tmp_path)
    no_ids = _english()
    for cell in no_ids["cells"]:
        del cell["id"]
    (tmp_path / "08_old.ipynb").write_text(json.dumps(no_ids))
    assert zh.main(["08_old"], notebooks=tmp_path) == 1
    assert "08_old.ipynb: some cells have no id" in capsys.readouterr().out
    assert not (tmp_path / "zh" / "08_old.ipynb").exists()


def test_real_english_notebooks_make_clean_twins_once_translated():
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert paths
    for path in paths:
        english = json.loads(path.read_text(encoding="utf-8"))
        for i, cell in enumerate(english["cells"]):  # (a notebook not yet saved as nbformat 4.5 lacks ids)
            cell.setdefault("id", f"cell-{i}")
        twin = zh.build_twin(english, None, path.name)
        assert [c["id"] for c in twin["cells"]] == [c["id"] for c in english["cells"]]
        code = [(c["source"], c["metadata"]) for c in english["cells"] if c["cell_type"] == "code"]
        assert [(c["source"], c["metadata"]) for c in twin["cells"] if c["cell_type"] == "code"] == code
        n_markdown = sum(c["cell_type"] == "markdown" for c in english["cells"])
        problems = zh.check_twin(english, twin)
        assert len(problems) == n_markdown and all(zh.TODO in p for p in problems), (path.name, problems)
        for cell in twin["cells"]:  # a stand-in translator: Chinese text, the rest kept
            if cell["cell_type"] == "markdown":
                cell["source"] = ["中文：\n"] + _lines(_text(cell).removeprefix(zh.TODO + "\n"))
        twin = zh.build_twin(english, twin, path.name)  # records the English text each translation is made from
        assert zh.check_twin(english, twin) == [], path.name
        assert f"notebooks/zh/{path.name})" in _text(twin["cells"][0])


_TWINS = sorted((ROOT / "notebooks" / "zh").glob("*.ipynb"))


def test_every_english_notebook_has_a_consistent_twin():
    problems = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        twin_path = ROOT / "notebooks" / "zh" / path.name
        if not twin_path.exists():
            problems.append(f"zh/{path.name}: missing; run `python tools/zh_twins.py`")
            continue
        english = json.loads(path.read_text(encoding="utf-8"))
        twin = json.loads(twin_path.read_text(encoding="utf-8"))
        problems += [f"zh/{path.name}: {line}" for line in zh.check_twin(english, twin, path.name)]
    english_names = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
    problems += [f"zh/{p.name}: no English notebook" for p in _TWINS if p.name not in english_names]
    assert not problems, "\n".join(problems)


def test_an_english_edit_makes_its_translation_stale_until_accepted():
    english = _english()
    twin = _translated(english)
    assert zh.check_twin(english, twin, NAME) == []
    prose = next(c for c in english["cells"] if c["id"] == "prose")
    prose["source"] = _lines("We train a **tiny** network.\n\nThen we look at `loss`.")
    problems = zh.check_twin(english, twin, NAME)
    assert len(problems) == 1 and "prose" in problems[0] and "--accept" in problems[0]
    assert zh.check_twin(english, zh.build_twin(english, twin, NAME), NAME) == problems, "a rebuild alone does not hide it"
    # the translator updates the Chinese, then accepts: the current English is recorded as its source
    next(c for c in twin["cells"] if c["id"] == "prose")["source"] = _lines("我们训练一个**很小的**网络。\n\n然后看 `loss`。")
    accepted, _ = zh.sync_twin(english, twin, NAME, accept=True)
    assert zh.check_twin(english, accepted, NAME) == []


def test_generated_parts_of_the_english_header_do_not_make_the_title_stale():
    english = _english()
    twin = _translated(english)
    title = next(c for c in english["cells"] if c["id"] == "title")
    title["source"] = _lines(_text(title) + "\n\n**Run time**, measured by `benchmarks/notebook_times.py`: 12 s.")
    assert zh.check_twin(english, twin, NAME) == []
