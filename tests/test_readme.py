"""The README stays a short entry point: the two commands first, links to existing pages."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_first_commands_are_make_demo_then_make_test() -> None:
    block = README.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in block.splitlines()] == [["make", "demo"], ["make", "test"]]


def test_every_relative_link_points_to_an_existing_file() -> None:
    links = [link for link in re.findall(r"\]\(([^)#\s]+)", README) if "://" not in link]
    assert links, "the README links to the docs pages"
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert not missing, f"README links to missing files: {', '.join(missing)}"


def test_the_quick_start_follows_the_two_commands_then_the_studies_and_a_trained_model() -> None:
    after = README.split("```bash\n", 1)[1].split("```", 1)[1]
    assert after.lstrip().startswith("## Using it\n")
    headings = re.findall(r"^## (.+)$", README, flags=re.MULTILINE)
    assert headings.index("Using it") < headings.index("Use a trained model")


def test_every_study_named_is_explained_with_its_config() -> None:
    named = sorted(set(re.findall(r"\bS([1-5])\b", README)))
    rows = dict(re.findall(r"^\| S([1-5]) \|.*`(configs/[^`]+)` \|$", README, flags=re.MULTILINE))
    assert named and sorted(rows) == named  # a study is named only with its row
    missing = [path for path in rows.values() if not (ROOT / path).is_file()]
    assert not missing, missing
