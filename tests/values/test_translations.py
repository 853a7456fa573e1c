"""The Korean docs beside the English ones (docs/X.ko.md next to docs/X.md) stay in step: the same
headings at the same levels in the same order, and the same code blocks byte for byte, so a
command or a section added to one cannot be missing from the other. Prose is translated, never
compared; the headings are compared by level and count, since their words differ."""

from __future__ import annotations

import re

import pytest

from cmm_values import REPO

DOCS = REPO / "docs"

# The docs people run the product from day to day: each must have its Korean twin.
REQUIRED = ["getting-started", "operations", "bootstrap", "security"]

FENCE = re.compile(r"^(```|~~~)")


def outline(text: str) -> tuple[list[int], list[str]]:
    """Heading levels outside code blocks, and the code blocks themselves."""
    levels: list[int] = []
    blocks: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if FENCE.match(line):
            if current is None:
                current = [line]
            else:
                current.append(line)
                blocks.append("\n".join(current))
                current = None
            continue
        if current is not None:
            current.append(line)
            continue
        m = re.match(r"^(#{1,6}) \S", line)
        if m:
            levels.append(len(m.group(1)))
    assert current is None, "an unclosed code block"
    return levels, blocks


def pairs() -> list[str]:
    return sorted(p.name.removesuffix(".ko.md") for p in DOCS.glob("*.ko.md"))


def test_every_day_to_day_doc_has_its_korean_twin():
    missing = [d for d in REQUIRED if not (DOCS / f"{d}.ko.md").is_file()]
    assert not missing, f"no Korean twin of docs/{missing}.md"


@pytest.mark.parametrize("name", pairs())
def test_a_korean_doc_has_the_english_ones_headings_and_code(name: str):
    english = DOCS / f"{name}.md"
    assert english.is_file(), f"docs/{name}.ko.md has no English original"
    en_levels, en_blocks = outline(english.read_text())
    ko_levels, ko_blocks = outline((DOCS / f"{name}.ko.md").read_text())
    assert ko_levels == en_levels, (
        f"docs/{name}.ko.md's headings (levels {ko_levels}) are not docs/{name}.md's "
        f"({en_levels}): translate the section that was added or removed"
    )
    assert len(ko_blocks) == len(en_blocks), f"docs/{name}.ko.md has {len(ko_blocks)} code blocks, the original {len(en_blocks)}"
    for i, (ko, en) in enumerate(zip(ko_blocks, en_blocks)):
        assert ko == en, f"code block {i + 1} of docs/{name}.ko.md differs from the original's:\n{ko}\n---\n{en}"


def test_the_comparison_catches_a_missing_section_and_a_changed_command():
    base = "# T\n\n## A\n```sh\nrun a\n```\n## B\n"
    assert outline(base) == ([1, 2, 2], ["```sh\nrun a\n```"])
    assert outline(base.replace("## B\n", ""))[0] != outline(base)[0]
    assert outline(base.replace("run a", "run b"))[1] != outline(base)[1]
    # A heading inside a code block is code, not a heading.
    assert outline("# T\n```sh\n# comment\n```\n")[0] == [1]
