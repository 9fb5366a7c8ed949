"""The documentation's links: every relative link in the project's Markdown files resolves to a
file that exists, and every `#anchor` to a heading of its target (GitHub's heading ids)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
EXTERNAL = ("http://", "https://", "mailto:")


def markdown_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(ROOT / name for name in listed if (ROOT / name).is_file())


def prose(text: str) -> str:
    """The text without code blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def heading_ids(text: str) -> set[str]:
    """GitHub's ids: lower case, punctuation dropped (not `-` or `_`), spaces to `-`, and
    `-1`, `-2`, ... for repeats."""
    ids: set[str] = set()
    for title in HEADING.findall(FENCE.sub("", text)):
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link's text only
        slug = re.sub(r"[^\w\- ]", "", title.replace("`", "").lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in ids:
            n += 1
            candidate = f"{slug}-{n}"
        ids.add(candidate)
    return ids


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    text = path.read_text(encoding="utf-8")
    problems = []
    for target in LINK.findall(prose(text)):
        if target.startswith(EXTERNAL) or "<" in target:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}: {target}"
        if not resolved.exists():
            problems.append(f"{where}: no such file")
            continue
        if not resolved.is_relative_to(root):
            problems.append(f"{where}: outside the repository")
        elif (
            anchor
            and resolved.suffix == ".md"
            and anchor not in heading_ids(resolved.read_text(encoding="utf-8"))
        ):
            problems.append(f"{where}: no heading #{anchor}")
    return problems


def test_the_docs_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in markdown_files()}
    assert {"README.md", "docs/configuration.md", "helm/aep-connector/README.md"} <= names


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(path) == []


def test_a_dangling_link_and_a_wrong_anchor_are_found(tmp_path: Path) -> None:
    # The checker itself: each kind of breakage is reported, good links are not.
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# Project\n", encoding="utf-8")
    (tmp_path / "docs" / "delivery.md").write_text("# Delivery\n\n## The rules\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Title\n\n## A `code` heading, with commas\n\n"
        "[ok](../README.md) [ok](#a-code-heading-with-commas) [ok](delivery.md#the-rules)\n"
        "[gone](missing.md) [bad anchor](delivery.md#no-such) ![img](nothing.png)\n"
        "`[not a link](nowhere.md)` [out](../../elsewhere.md) [web](https://example.org/x)\n",
        encoding="utf-8",
    )
    found = broken_links(page, tmp_path)
    assert [p.split(": ", 1)[1] for p in found] == [
        "missing.md: no such file",
        "delivery.md#no-such: no heading #no-such",
        "nothing.png: no such file",
        "../../elsewhere.md: no such file",
    ]


def test_the_readme_is_a_landing_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail to docs/"
