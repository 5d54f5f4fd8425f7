"""The documentation is self-contained: every pointer resolves inside the repository.

* No file of the project points at a private write-up outside it (a spec file, a sibling
  ``shared`` folder, or a numbered section of such a file).
* ``docs/method.md`` exists, and every ``docs/<page>.md#anchor`` written anywhere in the
  project (docstrings, comments, Markdown) names a heading of that page, with GitHub's anchor
  rules. In-page links (``](#anchor)``) and relative Markdown links resolve too.
"""

from __future__ import annotations

import os
import re
import subprocess
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# Written so that this file does not match them itself.
FORBIDDEN = {
    "a spec file": re.compile(r"SPEC\.md"),
    "the shared folder": re.compile(r"\.\./shared"),
    "a spec section": re.compile(r"SPEC\W{0,4}(?:sections?\b|§)"),
}
# docs/method.md#mmt-loss, docs/results.md, method.md#x (from inside docs/)
DOC_REF = re.compile(r"(?<![\w/.-])(docs/)?([a-z0-9_-]+)\.md(?:#([\w-]+))?")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def project_files() -> list[Path]:
    """Files of the project: tracked or new-and-not-ignored by git, else a walk of the tree."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout.decode()
        names = [n for n in out.split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = []
        for base, dirs, files in os.walk(ROOT):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"
                       and not d.endswith(".egg-info")]
            names += [os.path.relpath(os.path.join(base, f), ROOT) for f in files]
    return [ROOT / n for n in sorted(names) if (ROOT / n).is_file()]


def read_text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data:
        return None  # binary
    return data.decode("utf-8", errors="replace")


def github_anchor(title: str) -> str:
    """GitHub's heading id: lower case, punctuation dropped, spaces to hyphens."""
    title = re.sub(r"`([^`]*)`", r"\1", title)              # code spans keep their text
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # links keep their text
    kept = "".join(
        c for c in title.lower()
        if c in " -_" or unicodedata.category(c)[0] in "LN"
    )
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Anchors of every heading of a Markdown file (outside code fences), with GitHub's
    ``-1``, ``-2`` suffixes for repeated titles."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else HEADING.match(line)
        if m:
            slug = github_anchor(m.group(2))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


FILES = project_files()
TEXTS = {p: t for p in FILES if (t := read_text(p)) is not None}


def test_github_anchor_rules():
    assert github_anchor("MMT loss") == "mmt-loss"
    assert github_anchor("Dual-path model and share points") == "dual-path-model-and-share-points"
    assert github_anchor("Defaults and where they come from") == "defaults-and-where-they-come-from"
    assert github_anchor("Equation 1 as extracted") == "equation-1-as-extracted"
    assert github_anchor("Why `p` = 0.5?") == "why-p--05"


def test_the_walk_sees_the_project():
    names = {p.relative_to(ROOT).as_posix() for p in TEXTS}
    assert {"README.md", "docs/method.md", "mag_mmt/losses.py", "tests/test_docs.py"} <= names


@pytest.mark.parametrize("what", sorted(FORBIDDEN))
def test_no_pointer_outside_the_repository(what):
    pattern = FORBIDDEN[what]
    hits = [
        f"{p.relative_to(ROOT)}:{line_of(t, m.start())}: {m.group(0)!r}"
        for p, t in TEXTS.items()
        for m in pattern.finditer(t)
    ]
    assert not hits, f"pointers to {what}, which users never get:\n" + "\n".join(hits)


def test_method_page_exists_with_its_sections():
    page = DOCS / "method.md"
    assert page.is_file()
    have = anchors(page)
    for section in ("task-and-batch-convention", "mmt-loss", "mag-sampling-law",
                    "dual-path-model-and-share-points", "mmgl-pre-training",
                    "evaluation-protocols", "defaults-and-where-they-come-from"):
        assert section in have, f"docs/method.md has no heading for #{section}"


def test_every_docs_reference_resolves():
    """``docs/<page>.md#anchor`` anywhere (and ``<page>.md#anchor`` inside docs/) names an
    existing page and one of its headings."""
    bad, checked = [], 0
    for p, t in TEXTS.items():
        in_docs = p.parent == DOCS
        for m in DOC_REF.finditer(t):
            prefix, page, anchor = m.groups()
            if not prefix and not in_docs:
                continue  # README.md, CHANGELOG.md ... outside docs/
            target = DOCS / f"{page}.md"
            if not prefix and not target.is_file():
                continue  # a sibling file name that is not a docs page (e.g. README.md)
            checked += 1
            where = f"{p.relative_to(ROOT)}:{line_of(t, m.start())}: {m.group(0)}"
            if not target.is_file():
                bad.append(f"{where}: no such page")
            elif anchor and anchor not in anchors(target):
                bad.append(f"{where}: no heading with that anchor in docs/{page}.md")
    assert checked >= 10  # the library's docstrings point at the method page
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("page", ["README.md", *sorted(
    p.relative_to(ROOT).as_posix() for p in DOCS.glob("*.md"))])
def test_markdown_links_resolve(page):
    """Relative links and in-page anchors of the README and of every docs page."""
    path = ROOT / page
    text = path.read_text(encoding="utf-8")
    bad = []
    for m in MD_LINK.finditer(text):
        link = m.group(1)
        if re.match(r"[a-z]+:", link):
            continue  # http:, https:, mailto:
        file_part, _, anchor = link.partition("#")
        target = (path.parent / file_part).resolve() if file_part else path
        where = f"{page}:{line_of(text, m.start())}: {link}"
        if not target.exists():
            bad.append(f"{where}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            bad.append(f"{where}: no such heading")
    assert not bad, "\n".join(bad)
