"""The suite runner, one module per stage: spec → expand → execute → schedule.

- :mod:`.spec`: the TOML file read and its shape checked (:class:`SuiteError` names file and key);
- :mod:`.resolve` / :mod:`.expand`: names resolved, grids expanded into :class:`Run` s, each with a
  :class:`~stability.config.RunConfig` and its stable id;
- :mod:`.execute`: one run (:func:`execute_run`), seeded, returning its metric rows;
- :mod:`.schedule`: executors (in-process, local processes, dask) and :func:`run_suite`, which
  writes each finished run to the store in one transaction.

    suite = load_suite("quick", ptb_dir="../shared/data/ptb")
    summary = run_suite(suite, Store("runs/quick.sqlite"), workers=2)
"""
from .execute import execute_run, seed_everything
from .expand import Run, Suite, load_suite
from .resolve import DATA_SOURCES, Resolver, coerce_like
from .schedule import InlineExecutor, RunSummary, dask_executor, last_line, local_executor, run_suite
from .spec import DEFAULT_SUITE, SuiteError, parse_suite, shipped_suites, suite_description, suite_source

__all__ = [
    "load_suite", "run_suite", "execute_run", "seed_everything", "Run", "Suite", "RunSummary", "SuiteError",
    "parse_suite", "shipped_suites", "suite_source", "suite_description", "DEFAULT_SUITE", "DATA_SOURCES",
    "Resolver", "coerce_like", "InlineExecutor", "local_executor", "dask_executor", "last_line",
]
