"""The core speed comparison, as ratios: ``stability bench`` / ``python -m stability.bench``.

Figures (each one a ratio measured inside a round, then the median over the rounds):

(a) Materializing a reflector product, forward + backward:
    - compact WY (:func:`~stability.transitions.householder_product`) from k = n = 256
      reflectors vs the sequential definition
      (:func:`~stability.transitions.householder_product_reference`): target >= 20× faster;
    - the same vs one 256×256 matrix product forward + backward: target within 4.5×;
    - compact WY vs ``torch.linalg.householder_product`` at n = k = 512, both built from the
      same (LAPACK-layout) reflectors: target >= 8× faster.
(b) One training step (forward + loss + backward; the optimizer update is left out) of
    :class:`~stability.model.RecurrentNet` with each built-in transition (k = n reflectors for
    householder and spectral), batch 64, against ``torch.nn.RNN`` (dense, same sizes, same
    readout): the ratio of step times, and the share of the step spent building W
    (``transition.matrix()`` forward + backward, timed in the same round); beside them the same
    ratio for what users would write instead (:mod:`.baselines`: ``torch.nn.RNN`` with
    ``torch.nn.utils.parametrizations.orthogonal``, each map, or geotorch, on ``weight_hh_l0``).
    At n = 128, T = 1000, or at every (n, T) of ``--sizes`` (``table``: issue 20's five points).
    Targets: spectral <= 1.0× the ``torch.nn.RNN`` step, and W build < 3 % of its step (T >= 1000).
(c) The full Jacobian decay curve (:func:`~stability.probes.jacobian_decay`, default method,
    every gap g = 0..T−1) of a dense tanh :class:`~stability.model.RecurrentNet` at n = 128,
    T = 1000, batch 8 against one forward + backward pass of the same model on the same input:
    target <= 1.5× (issue 20; measured ≈ 3.4×, below which the sketch's own products do not go:
    docs/probe-accuracy.md); beside it, untargeted, the general torch.func path any cell takes.

``--groups`` picks the figures to measure (default: all three).

Every round runs all cases once, in a freshly shuffled order; a case that takes less than
``--min-time`` is called several times in a row and its time divided. Ratios are formed
inside each round, so slow drifts of the machine cancel; the report gives their median and
quartiles. Results: ``bench.json``, ``bench.csv``, ``bench.md`` (figures) and ``rounds.csv``
(every timing) under ``--out`` (default ``reports/bench/``).

The allocator is pinned (``MALLOC_MMAP_MAX_=0``, ``MALLOC_TRIM_THRESHOLD_`` large) because page
faults otherwise dominate the differences on CPU. glibc reads these at process start, so by
default the measurement re-runs itself in a child process with them set
(``--allocator inherit`` measures in the current process as it is); the output records
whether they were set.

Modules: :mod:`.cases` (the timed operations and their sizes), :mod:`.baselines` (torch.nn.RNN
and the alternatives), :mod:`.timing` (calibration,
interleaved rounds, quartiles), :mod:`.output` (figures, environment, files), :mod:`.cli`
(arguments and :func:`main`). asv and pytest-benchmark may import these helpers.
"""
from __future__ import annotations

from .baselines import ALTERNATIVES, TORCH_RNN, TorchRNN, alternative_model, missing_package, \
    orthogonality_error
from .cases import FULL, GROUPS, INPUT_SIZE, OUTPUT_SIZE, QUICK, QUICK_TABLE_POINTS, TABLE_POINTS, Sizes, \
    case_name, probe_cases, reflector_cases, sizes_for, training_cases, transition_options
from .cli import DEFAULT_OUT, DEFAULT_ROUNDS, _all_names, _builtin_names, main, parser
from .output import ALLOCATOR_ENV, CSV_COLUMNS, REEXEC_MARK, ROUND_COLUMNS, allocator_state, build_figures, \
    environment, figure, markdown, training_table, write_outputs
from .timing import Case, calibrate, quartiles, run_rounds

__all__ = ["main", "parser", "Sizes", "FULL", "QUICK", "TABLE_POINTS", "QUICK_TABLE_POINTS", "sizes_for", "GROUPS",
           "INPUT_SIZE", "OUTPUT_SIZE", "Case", "TorchRNN", "TORCH_RNN", "ALTERNATIVES", "alternative_model",
           "missing_package", "orthogonality_error", "case_name", "reflector_cases", "training_cases", "probe_cases",
           "transition_options", "calibrate", "run_rounds", "quartiles", "figure", "build_figures", "training_table",
           "allocator_state", "environment", "markdown", "write_outputs",
           "ALLOCATOR_ENV", "REEXEC_MARK", "CSV_COLUMNS", "ROUND_COLUMNS", "DEFAULT_OUT", "DEFAULT_ROUNDS"]
