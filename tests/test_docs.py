"""The README is a front door (issue 22): short, opening with the two commands CI and users run,
and every relative link of the project's Markdown pages points to a file that exists."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TWO_COMMANDS = ("bash tools/install.sh && .venv/bin/ovchat export default && .venv/bin/ovchat demo",
                "bash tools/install.sh full && .venv/bin/python -m pytest -q")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target); an image's ![alt](target) too


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
            REPO / "benchmarks" / "README.md", REPO / "studies" / "README.md"]


def relative_targets(text: str) -> list[str]:
    """Link targets that name a file of the repository (no URL, no bare #anchor), anchor removed."""
    targets = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_the_readme_is_at_most_260_lines():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 260, f"README.md has {len(lines)} lines: move details to a docs/ page"


def test_the_readme_opens_with_the_two_commands():
    lines = (REPO / "README.md").read_text().splitlines()
    block_start = lines.index("```bash")
    assert block_start < 10, "the two commands' block must open the README"
    block = lines[block_start:lines.index("```", block_start + 1)]
    assert [line for line in block if line in TWO_COMMANDS] == list(TWO_COMMANDS)


def test_the_link_finder_sees_relative_links_only():
    text = "[a](docs/api.md#the-api) [b](https://x.org/y.md) [c](#here) ![d](img/e.png) `[f](g)`"
    assert relative_targets(text) == ["docs/api.md", "img/e.png", "g"]


def test_every_relative_link_points_to_an_existing_file():
    missing = []
    for page in pages():
        assert page.exists(), f"{page.relative_to(REPO)} is gone: update tests/test_docs.py's pages()"
        for target in relative_targets(page.read_text()):
            if not (page.parent / target).exists():
                missing.append(f"{page.relative_to(REPO)} -> {target}")
    assert not missing, "broken links:\n" + "\n".join(missing)
