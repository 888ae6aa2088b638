"""The documentation: the README as a front door, docs/ pages whole, every relative link alive."""

from __future__ import annotations

import collections
import pathlib
import re

import pytest

from flux_worker.config import VARIABLES

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted({*ROOT.glob("*.md"), *DOCS.glob("*.md")})
# Read by gunicorn (serving/gunicorn_settings.py), not by Config; documented all the same.
GUNICORN_VARIABLES = {"PORT", "HOST", "WEB_CONCURRENCY"}
FRONT_DOOR_LINES = 250


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans removed."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", "", line))
    return lines


def anchors(page: pathlib.Path) -> set[str]:
    """The anchors GitHub gives the page's headings (lower case, punctuation dropped)."""
    seen: collections.Counter[str] = collections.Counter()
    found = set()
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced or not re.match(r"#{1,6} ", line):
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", line.lstrip("#").strip())
        slug = re.sub(r"[^\w\- ]", "", text.replace("`", "").lower()).replace(" ", "-")
        found.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return found


def relative_links(page: pathlib.Path) -> list[str]:
    """Every link target of the page that is neither a URL nor an e-mail address."""
    targets = []
    for line in prose(page.read_text(encoding="utf-8")):
        targets += [t for t in re.findall(r"\]\(([^)\s]+)", line)
                    if not re.match(r"[a-z][a-z0-9+.-]*:", t)]
    return targets


def test_the_anchor_rule_is_githubs():
    page = DOCS / "configuration.md"
    found = anchors(page)
    assert {"all-variables", "counters-counters_url", "image-links-image_links"} <= found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_and_heading_that_exist(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor.lower() not in anchors(file):
            broken.append(f"{target}: no such heading in {file.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_the_link_check_finds_broken_links(tmp_path):
    (tmp_path / "other.md").write_text("# Title\n\n## A `code` heading, too\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#a-code-heading-too) [gone](missing.md) [bad](other.md#nope)\n"
                    "`[in code](missing-too.md)`\n```\n[fenced](missing-three.md)\n```\n",
                    encoding="utf-8")
    assert relative_links(page) == ["other.md#a-code-heading-too", "missing.md", "other.md#nope"]
    assert "a-code-heading-too" in anchors(tmp_path / "other.md")
    assert "nope" not in anchors(tmp_path / "other.md")


def section(text: str, heading: str) -> str:
    return text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_quick_start_keeps_the_two_commands():
    quick = section(README.read_text(encoding="utf-8"), "## Quick start")
    assert "```sh\nmake run\n```" in quick
    assert "```sh\nmake test\n```" in quick
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_the_readme_is_a_front_door():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= FRONT_DOOR_LINES, \
        "the README is the front door: move reference material to a page in docs/"
    assert "](docs/playground.png)" in text
    linked = {pathlib.PurePosixPath(t.partition("#")[0]).name for t in relative_links(README)
              if t.startswith("docs/") and t.partition("#")[0].endswith(".md")}
    assert linked == {p.name for p in DOCS.glob("*.md")}, \
        "every docs/ page is linked from the README"


def table_rows(text: str) -> dict[str, str]:
    """`NAME` -> default cell of the variable table rows in `text`."""
    rows = re.findall(r"^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|(.*?)\|", text, re.M)
    return {name: default.strip() for name, default in rows}


def test_the_readme_settings_are_real_variables_with_their_documented_defaults():
    short = table_rows(section(README.read_text(encoding="utf-8"),
                               "## The settings most people set"))
    full = table_rows(section((DOCS / "configuration.md").read_text(encoding="utf-8"),
                              "## All variables"))
    assert 8 <= len(short) <= 12, "the README shows the settings most people set, about ten"
    known = {v.name for v in VARIABLES} | GUNICORN_VARIABLES
    assert set(short) <= known, set(short) - known
    assert {name: full[name] for name in short} == short
