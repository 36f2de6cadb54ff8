"""A ranking session: which pair each rater sees next, and checked submissions.

Everything a rater sees follows from their own committed judgments: the schedulers replay
them, the sides and the quality-control repeats come from seeded hashes of (rater, prompt,
step). A restart therefore resumes each rater exactly, and a submission that is not for
the pair due (replayed, out of order, or for another pair) is refused and changes nothing.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from openended.apps.ranking.inputs import RankPrompt, input_fingerprint, load_rank_input
from openended.apps.ranking.schedule import (
    Judgment,
    KnockoutThenBT,
    MergeInsertionSort,
    bt_posterior,
    p_best,
)
from openended.apps.ranking.store import RESULTS, RankingStore, RankingStoreError, StoredJudgment

Mode = Literal["best", "full"]
REPEAT_GAP = 3  # a QC repeat re-shows a pair judged at least this many steps earlier
MODES = ("best", "full")


class RankRequestError(Exception):
    """A request the session refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Due:
    """The pair a rater must judge next (candidate indices, as they go on screen)."""

    prompt_idx: int
    step: int
    left: int
    right: int
    kind: str  # "schedule", or "repeat" (an earlier pair again, sides swapped)
    repeat_of: int | None = None


def default_budget(n: int) -> int:
    """Comparisons per prompt and rater: 150 for 64 candidates, in proportion otherwise."""
    return max(n - 1, math.ceil(150 * (n - 1) / 63))


def _unit(*parts: object) -> float:
    """A reproducible number in [0, 1) from the parts."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def as_schedule_judgment(j: StoredJudgment) -> Judgment:
    """A stored judgment as the schedulers see it (a = left, b = right)."""
    result = {"left": "a", "right": "b"}.get(j.result, j.result)
    return Judgment(j.left_idx, j.right_idx, result)  # type: ignore[arg-type]


class RankingSession:
    """Schedules and records judgments for every rater of one ranking database.

    Args:
        store: the database (prompts, raters, judgments).
        mode: "best" (knockout, then Bradley-Terry top-up) or "full" (merge-insertion).
        budget: comparisons per prompt and rater in "best" mode (default: `default_budget`).
        threshold: stop a prompt when P(leader is the best) reaches this.
        repeat_rate: share of steps that re-show an earlier pair, sides swapped (QC).
        seed: bracket orders, sides and repeats.
    """

    def __init__(
        self,
        store: RankingStore,
        *,
        mode: Mode = "best",
        budget: int | None = None,
        threshold: float = 0.9,
        repeat_rate: float = 0.05,
        seed: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not 0 <= repeat_rate < 1:
            raise ValueError(f"repeat_rate must be in [0, 1), got {repeat_rate}")
        self.store = store
        self.mode = mode
        self.budget = budget
        self.threshold = threshold
        self.repeat_rate = repeat_rate
        self.seed = seed
        self.prompts: list[RankPrompt] = store.prompts()
        self._index = {p.id: k for k, p in enumerate(self.prompts)}
        self._lock = store.lock  # one lock: the session's reads and the store's writes
        self._schedulers = [self._make_scheduler(k) for k in range(len(self.prompts))]
        self._next = lru_cache(maxsize=4096)(self._next_uncached)

    def settings(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "budget": self.budget,
            "threshold": self.threshold,
            "repeat_rate": self.repeat_rate,
            "seed": self.seed,
        }

    def _make_scheduler(self, prompt_idx: int) -> KnockoutThenBT | MergeInsertionSort:
        n = len(self.prompts[prompt_idx].candidates)
        # The same bracket for every rater, so raters share first-round pairs (agreement).
        seed = int(_unit(self.seed, self.prompts[prompt_idx].id) * 2**31)
        if self.mode == "full":
            return MergeInsertionSort(n, seed=seed)
        budget = self.budget if self.budget is not None else default_budget(n)
        return KnockoutThenBT(n, budget=budget, threshold=self.threshold, seed=seed)

    def _next_uncached(
        self, prompt_idx: int, history: tuple[Judgment, ...]
    ) -> tuple[int, int] | None:
        return self._schedulers[prompt_idx].next_pair(history)

    # --- what is due -------------------------------------------------------------

    def prompt_index(self, prompt_id: str) -> int:
        if prompt_id not in self._index:
            raise RankRequestError(404, f"unknown prompt_id {prompt_id!r}")
        return self._index[prompt_id]

    def due(self, rater: str) -> Due | None:
        """The next pair for `rater`, or None when every prompt is finished."""
        with self._lock:
            for prompt_idx in range(len(self.prompts)):
                due = self._due_in(rater, prompt_idx)
                if due is not None:
                    return due
            return None

    def _due_in(self, rater: str, prompt_idx: int) -> Due | None:
        done = self.store.judgments(rater=rater, prompt_idx=prompt_idx)
        history = tuple(as_schedule_judgment(j) for j in done if j.kind == "schedule")
        pair = self._next(prompt_idx, history)
        if pair is None:
            return None
        step = len(done)
        repeat = self._repeat_due(rater, prompt_idx, done)
        if repeat is not None:
            return Due(prompt_idx, step, repeat.right_idx, repeat.left_idx, "repeat", repeat.id)
        a, b = int(pair[0]), int(pair[1])
        if _unit(self.seed, "side", rater, self.prompts[prompt_idx].id, step) < 0.5:
            a, b = b, a
        return Due(prompt_idx, step, a, b, "schedule")

    def _repeat_due(
        self, rater: str, prompt_idx: int, done: Sequence[StoredJudgment]
    ) -> StoredJudgment | None:
        """An earlier pair to show again (sides swapped), on about `repeat_rate` of steps;
        never one of the last `REPEAT_GAP` pairs, so the rater does not simply remember."""
        if len(done) <= REPEAT_GAP or done[-1].kind == "repeat":
            return None
        step = len(done)
        if _unit(self.seed, "repeat", rater, self.prompts[prompt_idx].id, step) >= self.repeat_rate:
            return None
        repeated = {j.repeat_of for j in done if j.kind == "repeat"}
        recent = {frozenset((j.left_idx, j.right_idx)) for j in done[-REPEAT_GAP:]}
        options = [
            j
            for j in done[:-REPEAT_GAP]
            if j.kind == "schedule"
            and j.id not in repeated
            and frozenset((j.left_idx, j.right_idx)) not in recent
        ]
        if not options:
            return None
        pick = _unit(self.seed, "which", rater, self.prompts[prompt_idx].id, step)
        return options[int(pick * len(options))]

    # --- changes -----------------------------------------------------------------

    def submit(
        self,
        rater: str,
        *,
        prompt_id: str,
        step: int,
        left_id: str,
        right_id: str,
        result: str,
        seconds: float | None = None,
    ) -> StoredJudgment:
        """Record a judgment of the pair due; anything else is refused unchanged."""
        if result not in RESULTS:
            raise RankRequestError(422, f"result must be one of {', '.join(RESULTS)}")
        prompt_idx = self.prompt_index(prompt_id)
        with self._lock, self.store.transaction() as db:
            due = self.due(rater)
            self._check_due(due, prompt_idx, step, left_id, right_id)
            assert due is not None
            fields = {
                "rater": rater,
                "prompt_idx": prompt_idx,
                "prompt_id": prompt_id,
                "step": step,
                "kind": due.kind,
                "left_idx": due.left,
                "right_idx": due.right,
                "left_id": left_id,
                "right_id": right_id,
                "result": result,
                "repeat_of": due.repeat_of,
                "seconds": seconds,
            }
            return self.store.insert_judgment(db, fields)

    def _check_due(
        self, due: Due | None, prompt_idx: int, step: int, left_id: str, right_id: str
    ) -> None:
        prompt_id = self.prompts[prompt_idx].id
        if due is None:
            raise RankRequestError(409, "nothing is due: this rater has finished every prompt")
        due_id = self.prompts[due.prompt_idx].id
        where = f"the pair due is step {due.step} of prompt {due_id!r}"
        if prompt_idx < due.prompt_idx:
            raise RankRequestError(
                409, f"prompt {prompt_id!r} is already finished (a replayed submission?); {where}"
            )
        if prompt_idx > due.prompt_idx:
            raise RankRequestError(409, f"out of order: prompt {prompt_id!r} is not due; {where}")
        if step < due.step:
            raise RankRequestError(
                409, f"step {step} was already judged (a replayed submission); {where}"
            )
        if step > due.step:
            raise RankRequestError(409, f"out of order: step {step} is not due yet; {where}")
        candidates = self.prompts[due.prompt_idx].candidates
        expected = (candidates[due.left].id, candidates[due.right].id)
        if (left_id, right_id) != expected:
            raise RankRequestError(
                409,
                f"the pair submitted ({left_id!r}, {right_id!r}) is not the pair shown "
                f"({expected[0]!r}, {expected[1]!r}); {where}",
            )

    def undo(self, rater: str, judgment_id: int) -> StoredJudgment:
        """Withdraw the rater's latest judgment, `judgment_id` (named, so that a retried
        or replayed undo cannot withdraw one more); that pair is due again."""
        with self._lock, self.store.transaction() as db:
            last = self.last_judgment(rater)
            if last is None:
                raise RankRequestError(409, "nothing to undo: no judgments yet")
            if last.id != judgment_id:
                raise RankRequestError(
                    409,
                    f"judgment {judgment_id} is not this rater's latest (that is {last.id}); "
                    "only the latest judgment can be undone",
                )
            self.store.mark_undone(db, last)
        return last

    def last_judgment(self, rater: str) -> StoredJudgment | None:
        mine = self.store.judgments(rater=rater)
        return mine[-1] if mine else None

    # --- views -------------------------------------------------------------------

    def progress(self, rater: str, due: Due | None) -> dict[str, Any]:
        """For the page: "prompt 2 of 5, comparison 23 of about 70"."""
        prompts = len(self.prompts)
        if due is None:
            return {"prompt": prompts, "prompts": prompts, "comparison": None, "about": None}
        scheduler = self._schedulers[due.prompt_idx]
        n = len(self.prompts[due.prompt_idx].candidates)
        if isinstance(scheduler, KnockoutThenBT):
            about = scheduler.expected_comparisons()
        else:
            about = math.ceil(math.log2(math.factorial(n)))
        about = round(about * (1 + self.repeat_rate))
        return {
            "prompt": due.prompt_idx + 1,
            "prompts": prompts,
            "comparison": due.step + 1,
            "about": max(about, due.step + 1),
        }

    def rater_choice(self, rater: str, prompt_idx: int) -> int:
        """The candidate this rater's judgments pick as the best of a prompt."""
        done = self.store.judgments(rater=rater, prompt_idx=prompt_idx)
        history = [as_schedule_judgment(j) for j in done if j.kind == "schedule"]
        scheduler = self._schedulers[prompt_idx]
        if isinstance(scheduler, MergeInsertionSort):
            return scheduler.ranking(history)[0]
        return scheduler.leader(history)[0]

    def scores(self, prompt_idx: int) -> dict[str, Any]:
        """Bradley-Terry scores of a prompt's candidates from every rater's judgments
        (QC repeats left out: they would count one pair twice)."""
        n = len(self.prompts[prompt_idx].candidates)
        judged = [j for j in self.store.judgments(prompt_idx=prompt_idx) if j.kind == "schedule"]
        history = [as_schedule_judgment(j) for j in judged]
        mean, cov = bt_posterior(n, history)
        probabilities = p_best(mean, cov, seed=self.seed)
        comparisons = np.zeros(n, int)
        won = np.zeros(n, int)
        for j in judged:
            comparisons[[j.left_idx, j.right_idx]] += 1
            if j.winner is not None:
                won[j.winner] += 1
        return {
            "mean": mean,
            "sd": np.sqrt(np.diag(cov)),
            "p_best": probabilities,
            "comparisons": comparisons,
            "wins": won,
        }


DEFAULTS: dict[str, Any] = {
    "mode": "best",
    "budget": None,
    "threshold": 0.9,
    "repeat_rate": 0.05,
    "seed": 0,
}


def default_db_path(source: Path) -> Path:
    """``RUN_DIR/ranking.sqlite`` for a run, ``NAME.ranking.sqlite`` beside a JSONL file."""
    if source.is_dir():
        return source / "ranking.sqlite"
    return source.with_name(f"{source.stem}.ranking.sqlite")


def rater_names(spec: str) -> list[str]:
    """``"3"`` -> rater1..rater3; ``"alice,bob"`` -> those names."""
    spec = spec.strip()
    if spec.isdigit():
        return [f"rater{k}" for k in range(1, int(spec) + 1)]
    names = [name.strip() for name in spec.split(",") if name.strip()]
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
            raise RankingStoreError(
                f"rater name {name!r}: use letters, digits, '.', '_' or '-' (at most 40)"
            )
    if not names:
        raise RankingStoreError("--raters: give a number or comma-separated names")
    return names


RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "mode": (lambda v: v in MODES, f"one of {', '.join(MODES)}"),
    "budget": (lambda v: isinstance(v, int) and v >= 1, "a whole number >= 1"),
    "threshold": (lambda v: isinstance(v, int | float) and 0 < v <= 1, "in (0, 1]"),
    "repeat_rate": (lambda v: isinstance(v, int | float) and 0 <= v < 1, "in [0, 1)"),
    "seed": (lambda v: isinstance(v, int), "a whole number"),
}


def check_settings(settings: dict[str, Any]) -> None:
    """Refuse unknown or out-of-range settings before anything is stored."""
    for key, value in settings.items():
        if key not in RULES:
            raise RankingStoreError(f"unknown ranking setting {key!r}")
        valid, allowed = RULES[key]
        if not valid(value):
            raise RankingStoreError(f"{key} = {value!r}: must be {allowed}")


def open_session(
    source: str | Path,
    *,
    db: str | Path | None = None,
    raters: Sequence[str] = (),
    create: bool = True,
    **settings: Any,
) -> tuple[RankingSession, dict[str, str]]:
    """Open (or create) the ranking database for `source` (a JSONL file or a run
    directory); returns the session and every rater's token (and the admin's).

    Settings left out (or None) take their stored values, or the defaults in a new
    database; settings that differ from the stored ones are refused.
    """
    source = Path(source)
    given = {k: v for k, v in settings.items() if v is not None}
    check_settings(given)
    prompts = load_rank_input(source)
    path = Path(db) if db is not None else default_db_path(source)
    if not create and not path.exists():
        raise RankingStoreError(f"{path}: no ranking database (nothing has been judged yet)")
    store = RankingStore(path)
    try:
        store.initialise(prompts, input_fingerprint(prompts), DEFAULTS, given)
        tokens = store.add_raters(list(raters))
        session = RankingSession(store, **store.settings())
    except BaseException:
        store.close()
        raise
    return session, tokens
