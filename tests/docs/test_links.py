"""README.md and docs/*.md link only into the repository (or to web pages), every relative
link exists, every #anchor names a heading, and nothing mentions files outside the
repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Root documents that other changes add; linked from the README already. Remove a name
# once its file is in the repository (from then on its link is checked like any other).

LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)|<(?P<auto>[a-z]+://[^>\s]+)>")
FENCE = re.compile(r"^```.*?^```$", re.MULTILINE | re.DOTALL)


def links(doc: Path) -> list[str]:
    text = FENCE.sub("", doc.read_text())
    return [m.group("target") or m.group("auto") for m in LINK.finditer(text)]


def anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    text = FENCE.sub("", doc.read_text())
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", "")).replace(" ", "-")
        found.add(slug)
    return found


def test_there_are_documents() -> None:
    names = {d.relative_to(REPO).as_posix() for d in DOCUMENTS}
    assert {"README.md", "docs/pipelines.md", "docs/api.md", "docs/cli.md", "docs/operations.md"} <= names


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda d: d.relative_to(REPO).as_posix())
def test_links_stay_in_the_repository_and_exist(doc: Path) -> None:
    text = doc.read_text()
    assert "../shared" not in text and "/work/" not in text
    for target in links(doc):
        if re.match(r"https?://", target):
            continue
        assert ":" not in target.split("#")[0], f"{doc.name}: {target} is not a web page or a repository file"
        path, _, anchor = target.partition("#")
        resolved = (doc.parent / path).resolve() if path else doc
        assert resolved.is_relative_to(REPO), f"{doc.name}: {target} points outside the repository"
        assert resolved.exists(), f"{doc.name}: {target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{doc.name}: {target}: no heading #{anchor} in {resolved.name}"


def test_the_link_checker_catches_bad_links(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("see [spec](../shared/SPEC.md), [a](#b) and <http://127.0.0.1:6789/>\n\n## B\n")
    assert links(doc) == ["../shared/SPEC.md", "#b", "http://127.0.0.1:6789/"]
    assert anchors(doc) == {"b"}
