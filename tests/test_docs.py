"""The documentation is the repository's own: no pointers to material outside it, a page per paper, linked."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from claimbench.testing import REPO

THIS = Path(__file__).resolve().relative_to(REPO).as_posix()
# material that lives outside the repository (a clone cannot see it) and issue-tracker numbers
OUTSIDE = re.compile(r"\.\./shared|\bshared/|\bissue\s*#?\s*[0-9]+|\bspec section", re.IGNORECASE)
# generated tables: rebuilt from the claims files by `claimbench tables` (whose `spec` fields are checked below),
# never edited by hand, so a stale copy is fixed by regenerating, not here
GENERATED = ("results/",)
CLAIMS = sorted((REPO / "benchmarks" / "claims").glob("*.yaml"))
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _tracked() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [p for p in out.decode().split("\0") if p]


def test_no_tracked_file_points_outside_the_repository():
    hits = []
    for rel in _tracked():
        path = REPO / rel
        if rel == THIS or rel.startswith(GENERATED) or path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:  # binary (figures)
            continue
        for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{rel}:{n}: {line.strip()[:100]}")
    assert not hits, "pointers to material outside the repository (use docs/ instead):\n" + "\n".join(hits)


@pytest.mark.parametrize("claims_file", CLAIMS, ids=lambda p: p.stem)
def test_every_claims_file_has_its_paper_page(claims_file):
    doc = yaml.safe_load(claims_file.read_text())
    paper = doc["paper"]["id"]
    page = REPO / "docs" / "papers" / f"{paper}.md"
    assert page.is_file(), f"{claims_file.name}: docs/papers/{paper}.md is missing"
    # the tables print `spec` as "our reading of the paper": it must be that page
    assert doc["paper"].get("spec") == f"docs/papers/{paper}.md"
    text = page.read_text()
    missing = [c["id"] for c in doc["claims"] if c["id"] not in text]
    assert not missing, f"docs/papers/{paper}.md does not mention claims {missing}"
    assert "## What claimbench reconstructed" in text


def test_docs_index_and_readme_link_the_docs():
    index = (REPO / "docs" / "README.md").read_text()
    for name in ("design.md", "data.md", *(f"papers/{p.stem}.md" for p in CLAIMS)):
        assert (REPO / "docs" / name).is_file(), name
        assert f"({name})" in index, f"docs/README.md does not link {name}"
    readme = (REPO / "README.md").read_text()
    assert "## Documentation" in readme
    assert "](docs/" in readme


def test_relative_links_in_docs_resolve():
    broken = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for target in LINK.findall(page.read_text()):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def _cells(row: str) -> int:
    """Cells of a Markdown table row as GitHub counts them: an unescaped `|` splits, even inside backticks."""
    return len(row.strip().removeprefix("|").removesuffix("|").replace("\\|", "").split("|"))


def test_markdown_tables_have_as_many_cells_as_their_header():
    bad = []
    for rel in _tracked():
        if not rel.endswith(".md"):
            continue
        fenced, header = False, None
        for n, line in enumerate((REPO / rel).read_text().splitlines(), start=1):
            fenced ^= line.lstrip().startswith("```")
            if fenced or not line.startswith("|"):
                header = None
                continue
            if header is None:
                header = _cells(line)
            elif _cells(line) != header:
                bad.append(f"{rel}:{n}: {_cells(line)} cells under a {header}-cell header")
    assert not bad, "\n".join(bad)


def test_the_readmes_verdict_counts_are_the_committed_tables():
    """The README's per-paper, per-tier verdict counts equal the committed claims.csv of each tier."""
    import pandas as pd

    from claimbench.tables import VERDICTS

    readme = (REPO / "README.md").read_text()
    section = readme.split("### Verdicts per paper and tier", 1)[1].split("\n## ", 1)[0]
    rows = {m[0]: m[1:] for m in re.findall(r"^\| `(\w+)` \| ([\d / ]+) \| ([\d / ]+) \| (\d+) \|$", section, re.M)}
    tiers = {t: pd.read_csv(REPO / d / "claims.csv") for t, d in (("smoke", "results"), ("cpu", "results/cpu"))}
    papers = sorted(set(tiers["smoke"]["paper"]))
    assert sorted(rows) == papers

    def decided(df, p):
        return set(df[(df["paper"] == p) & df["verdict"].isin(VERDICTS[:2])]["claim"])

    for p in papers:
        for cell, df in zip(rows[p][:2], tiers.values(), strict=True):
            counts = df[df["paper"] == p]["verdict"].value_counts()
            assert [int(x) for x in cell.split(" / ")] == [int(counts.get(v, 0)) for v in VERDICTS], p
        assert int(rows[p][2]) == len(decided(tiers["smoke"], p) | decided(tiers["cpu"], p)), p
