"""The documentation: the site builds with no broken link or anchor, and the README stays a front door.

`mkdocs build --strict` (mkdocs.yml turns broken links, broken anchors and pages missing from the
nav into warnings, and --strict fails on any warning). The README is checked here directly, since
it is not part of the site: at most 300 lines, and every relative link points at a file (or
folder) of the repository; a link into a Markdown file with an anchor must name a heading there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_README_LINES = 300

# [text](target) and ![alt](target); the target ends at the first space or closing parenthesis
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~)")


def _prose(text: str) -> str:
    """The Markdown without fenced code blocks and inline code (links there are not links)."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(markdown: Path) -> set[str]:
    heads = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _prose(markdown.read_text()), re.M)
    return {_slug(h) for h in heads}


def _relative_links(text: str) -> list[str]:
    return [t for t in LINK.findall(_prose(text)) if not re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", t, re.I)]


def test_readme_is_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_relative_links_exist() -> None:
    links = _relative_links(README.read_text())
    assert any(t.startswith("docs/") for t in links), "the README links into docs/"
    broken = []
    for target in links:
        path, _, anchor = target.partition("#")
        file = (ROOT / path).resolve()
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading with that anchor in {path}")
    assert not broken, "broken links in README.md:\n" + "\n".join(broken)


def test_every_docs_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.name not in nav]
    assert not missing, f"docs pages missing from mkdocs.yml's nav: {missing}"


def test_docs_site_builds_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    # mkdocs and mkdocs-material come with the dev extra (make setup)
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout}\n{run.stderr}"
    assert (site / "index.html").exists()
