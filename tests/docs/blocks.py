"""The fenced code blocks of the user docs, with their doc-test annotations.

An annotation is an HTML comment on the last non-blank line before a block's opening
fence (invisible when the Markdown is rendered):

    <!-- doc-test: skip (needs a cluster) -->        not checked; the reason is required
    <!-- doc-test: shape SOURCE [any-keys PATHS] --> a JSON block: the keys and value types
                                                      of what SOURCE answers (see shapes.py)
    <!-- doc-test: request TARGET -->                 `METHOD /path` + JSON body, sent to the
                                                      live server or router

Every other block is checked according to its language and content (test_examples.py);
a block that none of the checkers knows fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS_DIR = ROOT / "docs"
GENERATED = {"api.md"}  # written by `python -m pilotage.api.apidocs`; has no examples

_FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)\s*$")
_ANNOTATION = re.compile(r"^<!--\s*doc-test:\s*(.*?)\s*-->$")


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    annotation: str  # "" when none

    @property
    def id(self) -> str:
        return f"{self.doc.name}:{self.line}"


def doc_files() -> list[Path]:
    """README.md and every docs/*.md a person reads (api.md is generated)."""
    docs = sorted(p for p in DOCS_DIR.glob("*.md") if p.name not in GENERATED)
    return [ROOT / "README.md", *docs]


def extract(doc: Path) -> list[Block]:
    lines = doc.read_text().splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.groups()
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        if end == len(lines):
            raise ValueError(f"{doc.name}:{i + 1}: unclosed code fence")
        blocks.append(
            Block(doc, i + 1, lang, "\n".join(lines[i + 1 : end]) + "\n", _annotation(lines, i))
        )
        i = end + 1
    return blocks


def _annotation(lines: list[str], fence_index: int) -> str:
    j = fence_index - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j < 0:
        return ""
    found = _ANNOTATION.match(lines[j].strip())
    return found.group(1) if found else ""


def all_blocks() -> list[Block]:
    return [block for doc in doc_files() for block in extract(doc)]
