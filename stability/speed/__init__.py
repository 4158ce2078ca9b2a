"""Speed over commits: an offline page of asv's results (``stability speed``; docs/speed.md).

- :mod:`.results`: read an asv results folder through asv's API (refusing what is not one);
- :mod:`.steps`: commit order from git, steps and regressions with ``asv.step_detect``;
- :mod:`.figures` / :mod:`.page`: seaborn PNG/SVG figures and one HTML page, no network.
"""
from .cli import main, run
from .results import SpeedError, load_results

__all__ = ["main", "run", "SpeedError", "load_results"]
