"""The Python examples of the README and of docs/ run as written, and their links lead somewhere."""

import re

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


BLOCKS = _python_blocks(ROOT / "README.md")
DOC_BLOCKS = [(path, i, code) for path in PAGES[1:] for i, code in enumerate(_python_blocks(path))]


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code):
    exec(compile(code, "README.md", "exec"), {})


@pytest.mark.parametrize(("path", "code"), [(path, code) for path, _, code in DOC_BLOCKS],
                         ids=[f"{path.stem}-block{i}" for path, i, _ in DOC_BLOCKS])
def test_docs_example_runs(path, code):
    exec(compile(code, str(path.relative_to(ROOT)), "exec"), {})


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


def _anchors(path):
    """The anchors GitHub gives the headings of a Markdown page."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_relative_links_lead_somewhere(page):
    """Every [text](target) that is not a web address names a file of the repository, and a
    #section in it names one of that page's headings."""
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        name, _, anchor = target.partition("#")
        path = (page.parent / name).resolve() if name else page
        assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{page.relative_to(ROOT)}: no section #{anchor}"
