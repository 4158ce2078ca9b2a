"""Commit order from git and steps in each series, found with asv's own step detection.

A *series* is one benchmark case (benchmark and parameter combination) on one machine in one
environment, its values in commit order. :func:`asv.step_detect.detect_steps` fits it with a
piecewise-constant function; every boundary where the level rises by more than the noise
(asv's segment error estimates) and the relative threshold is a regression, one where it
falls an improvement. :func:`asv.step_detect.detect_regressions` says which regressions are
still present at the newest measured commit ("current"), as asv's regressions page does.
Smaller is better for every kind (time, peakmemory, track), as in asv.
"""
from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .results import SpeedError

THRESHOLD = 0.05  # asv's default regressions_thresholds


@dataclass
class Commit:
    hash: str
    position: int
    subject: str = ""
    date: str = ""
    in_repo: bool = True

    @property
    def short(self) -> str:
        return self.hash[:8]


@dataclass
class CommitOrder:
    commits: list[Commit]
    repo: Path | None
    note: str = ""
    _git: object = None

    def position(self, commit_hash: str) -> int:
        return self._index[commit_hash]

    def __post_init__(self):
        self._index = {c.hash: c.position for c in self.commits}

    def commits_in_range(self, before: str, after: str) -> int | None:
        """How many commits git lists in before..after (1: ``after`` alone made the change)."""
        if self._git is None:
            return None
        try:
            return len(self._git.get_hashes_from_range(f"{before}..{after}"))
        except Exception:  # asv raises ProcessError for commits git does not know
            return None


def find_repo(results_folder: Path) -> Path | None:
    """The git work tree holding the results folder (or its nearest existing parent)."""
    probe = results_folder if results_folder.is_dir() else results_folder.parent
    try:
        out = subprocess.run(["git", "-C", str(probe), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, check=False)
    except OSError:
        return None
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def order_commits(table: pd.DataFrame, repo: Path | None) -> CommitOrder:
    """Measured commits in git's order (asv's ``get_revisions``: date order over all refs).

    Commits git does not know (or no repository) fall back to the commit dates asv stored.
    """
    dates = table.groupby("commit")["date"].min().to_dict()
    hashes = sorted(dates)
    git, revisions, note = None, {}, ""
    if repo is not None:
        try:
            from asv.plugins.git import Git

            if not Git.is_local_repo(str(repo)):
                raise SpeedError(f"--repo {repo} is not a git repository (it orders the commits)")
            git = Git(str(repo), str(repo))
            revisions = git.get_revisions(set(hashes))
        except SpeedError:
            raise
        except Exception as exc:  # asv's ProcessError: git failed
            note = f"git could not order the commits ({' '.join(str(exc).split())[:120]}); ordered by commit date"
            git = None
    unknown = [h for h in hashes if h not in revisions]
    if repo is None:
        note = "no git repository found: commits ordered by the commit dates asv stored"
    elif unknown and not note:
        note = (f"{len(unknown)} measured commit(s) are not in {repo}: all commits ordered by the "
                "commit dates asv stored")
    if unknown or git is None:
        order = sorted(hashes, key=lambda h: (dates[h], h))
    else:
        order = sorted(hashes, key=lambda h: revisions[h])
    commits = [Commit(h, i, in_repo=h in revisions) for i, h in enumerate(order)]
    if git is not None:
        _describe(repo, commits)
    return CommitOrder(commits, repo, note, git)


def _describe(repo: Path, commits: list[Commit]) -> None:
    known = [c for c in commits if c.in_repo]
    if not known:
        return
    out = subprocess.run(["git", "-C", str(repo), "show", "-s", "--format=%H%x09%ad%x09%s", "--date=short",
                          *[c.hash for c in known]], capture_output=True, text=True, check=False)
    described = {}
    for line in out.stdout.splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3:
            described[parts[0]] = parts[1:]
    for c in known:
        c.date, c.subject = described.get(c.hash, ("", ""))


@dataclass
class Step:
    machine: str
    env: str
    benchmark: str
    case: str
    kind: str
    unit: str
    before: str        # last commit measured at the old level
    after: str         # first commit measured at the new level
    commits_in_range: int | None   # git's count of before..after; 1: `after` introduced it
    value_before: float
    value_after: float
    regression: bool   # the level rose (smaller is better)
    current: bool = False  # a regression still present at the newest commit (detect_regressions)

    @property
    def ratio(self) -> float:
        return self.value_after / self.value_before if self.value_before else math.inf

    @property
    def introduced_by(self) -> str:
        """The commit that made the change, or the range it lies in (asv find narrows it)."""
        if self.commits_in_range == 1:
            return self.after
        return f"{self.before}..{self.after}"

    @property
    def introduced_short(self) -> str:
        if self.commits_in_range == 1:
            return self.after[:8]
        return f"{self.before[:8]}..{self.after[:8]}"


def series_steps(values: list[float], weights: list[float] | None, threshold: float = THRESHOLD):
    """(boundaries, current) for one series in commit order (NaN: not measured).

    boundaries: (before_pos, after_pos, level_before, level_after) for every boundary of
    asv's piecewise fit whose jump exceeds the noise and the threshold; current: the set of
    (before_pos, after_pos) asv's ``detect_regressions`` reports as still present.
    """
    from asv.step_detect import detect_regressions, detect_steps

    if sum(1 for v in values if v == v) < 2:
        return [], set()
    w = None if weights is None else [x if x == x else None for x in weights]
    steps = detect_steps([v if v == v else None for v in values], w)
    boundaries = []
    for (l0, r0, v0, _, e0), (l1, _r1, v1, _, e1) in zip(steps, steps[1:]):
        if abs(v1 - v0) > max(e0, e1, threshold * abs(v0)):
            boundaries.append((r0 - 1, l1, v0, v1))
    _, _, jumps = detect_regressions(steps, threshold)
    current = {(b, a) for b, a, _, _ in (jumps or [])}
    known = {(b, a) for b, a, _, _ in boundaries}
    levels = {(r0 - 1, l1): (v0, v1) for (_, r0, v0, _, _), (l1, _, v1, _, _) in zip(steps, steps[1:])}
    for key in current - known:  # needed to explain latest vs best, though under the noise test
        boundaries.append((*key, *levels.get(key, (math.nan, math.nan))))
    boundaries.sort()
    return boundaries, current


def find_steps(table: pd.DataFrame, order: CommitOrder, threshold: float = THRESHOLD) -> list[Step]:
    """Every step of every series in ``table`` (see :mod:`stability.speed.results`)."""
    found: list[Step] = []
    keys = ["machine", "env", "benchmark", "param_index"]
    for (machine, env, benchmark, _), rows in table.groupby(keys, sort=True):
        rows = rows.assign(pos=rows["commit"].map(order.position)).sort_values("pos")
        rows = rows[rows["value"].notna()]
        if len(rows) < 2:
            continue
        hashes = rows["commit"].tolist()
        boundaries, current = series_steps(rows["value"].tolist(), rows["weight"].tolist(), threshold)
        first = rows.iloc[0]
        for b, a, v0, v1 in boundaries:
            found.append(Step(machine, env, benchmark, first["case"], first["kind"], first["unit"],
                              hashes[b], hashes[a], order.commits_in_range(hashes[b], hashes[a]),
                              float(v0), float(v1), regression=v1 > v0, current=(b, a) in current))
    return found
