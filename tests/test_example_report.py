"""The checked-in example report was made by the default suite as it ships (it cannot go stale)."""
from pathlib import Path

from stability.report.example import SUITE_COPY
from stability.runner import DEFAULT_SUITE, suite_source

EXAMPLE = Path(__file__).resolve().parents[1] / "reports" / "example"


def test_example_was_made_by_the_shipped_default_suite():
    text, origin = suite_source(DEFAULT_SUITE)
    copy = EXAMPLE / SUITE_COPY
    assert copy.is_file(), f"{copy} is missing: regenerate with `python -m stability.report.example`"
    assert copy.read_text(encoding="utf-8") == text, (
        f"reports/example was made by another version of {origin}: regenerate it with "
        "`python -m stability.report.example --ptb-dir ../shared/data/ptb`")


def test_example_has_its_page_tables_and_screenshot():
    assert (EXAMPLE / "index.html").is_file() and (EXAMPLE / "report.md").is_file()
    assert (EXAMPLE / "screenshot.png").is_file()
    assert list((EXAMPLE / "tables").glob("*.csv")) and list((EXAMPLE / "figures").glob("*.png"))
