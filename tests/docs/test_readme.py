"""README.md's documentation table lists exactly the docs that exist, and no doc points
readers at files they do not have (the product design is not shipped)."""

from __future__ import annotations

import re

import pytest

from tests.docs.blocks import DOCS_DIR, ROOT, doc_files


def test_readme_table_lists_every_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    listed = set(re.findall(r"^\| `docs/([\w.-]+\.md)` \|", readme, flags=re.M))
    existing = {p.name for p in DOCS_DIR.glob("*.md")}
    assert listed == existing, f"missing: {existing - listed}, no such file: {listed - existing}"


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: p.name)
def test_no_reference_to_files_users_lack(doc: object) -> None:
    text = (ROOT / str(doc)).read_text()
    assert "../shared" not in text
    assert re.search(r"DESIGN(\.md| §)", text) is None


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: p.name)
def test_relative_links_resolve(doc: object) -> None:
    path = ROOT / str(doc)
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
        assert (path.parent / target).exists(), f"{path.name}: broken link {target}"
