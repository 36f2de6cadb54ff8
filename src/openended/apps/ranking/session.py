"""A ranking session: which screen each rater sees next, and checked submissions.

A screen is a pair (better of two, tie, both bad) or a multi-way screen (the best of K,
or the best and the worst of K; `choice`). Everything a rater sees follows from their own
committed answers: the schedulers replay them, the slots and the quality-control repeats
come from seeded hashes of (rater, prompt, step). A restart therefore resumes each rater
exactly, and a submission that is not for the screen due (replayed, out of order, or for
other items) is refused and changes nothing.
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

from openended.apps.ranking.choice import (
    Choice,
    ChoiceScheduler,
    Screen,
    default_views,
    parse_screen,
    pl_posterior,
)
from openended.apps.ranking.inputs import RankPrompt, input_fingerprint, load_rank_input
from openended.apps.ranking.schedule import (
    Judgment,
    KnockoutThenBT,
    MergeInsertionSort,
    bt_posterior,
    p_best,
)
from openended.apps.ranking.store import (
    CHOICE,
    RESULTS,
    RankingStore,
    RankingStoreError,
    StoredJudgment,
)

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
    """The screen a rater must answer next: candidate indices in their slots on screen
    (a pair's are left and right)."""

    prompt_idx: int
    step: int
    shown: tuple[int, ...]
    kind: str  # "schedule", or "repeat" (an earlier screen again, slots moved)
    repeat_of: int | None = None

    @property
    def left(self) -> int:
        return self.shown[0]

    @property
    def right(self) -> int:
        return self.shown[1]


def default_budget(n: int) -> int:
    """Comparisons per prompt and rater: 150 for 64 candidates, in proportion otherwise."""
    return max(n - 1, math.ceil(150 * (n - 1) / 63))


def _unit(*parts: object) -> float:
    """A reproducible number in [0, 1) from the parts."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def as_schedule_judgment(j: StoredJudgment) -> Judgment:
    """A stored pair judgment as the schedulers see it (a = left, b = right)."""
    result = {"left": "a", "right": "b"}.get(j.result, j.result)
    return Judgment(j.left_idx, j.right_idx, result)  # type: ignore[arg-type]


def as_choice(j: StoredJudgment) -> Choice:
    """A stored answer as the multi-way scheduler sees it: a multi-way answer as it is; a
    pair (a prompt with 2 candidates in a multi-way session) as a best-of-2, a tie or
    'both bad' as no preference."""
    if j.is_choice:
        return Choice(tuple(j.shown), j.best_idx, j.worst_idx)
    return Choice((j.left_idx, j.right_idx), j.winner)


def as_choices(judgments: Sequence[StoredJudgment]) -> list[Choice]:
    """Every answer as Plackett-Luce observations: a decisive pair is a best-of-2, a tie
    or 'both bad' one win each way (evidence that the two are close, as in `wins`)."""
    choices = []
    for j in judgments:
        if j.is_choice:
            choices.append(as_choice(j))
        elif j.winner is not None:
            choices.append(Choice((j.left_idx, j.right_idx), j.winner))
        else:
            choices += [
                Choice((j.left_idx, j.right_idx), j.left_idx),
                Choice((j.left_idx, j.right_idx), j.right_idx),
            ]
    return choices


def moved(shown: Sequence[int], shift: int) -> tuple[int, ...]:
    """`shown` rotated by `shift` slots (1 <= shift < len): no item keeps its slot."""
    return tuple(shown[shift:]) + tuple(shown[:shift])


class RankingSession:
    """Schedules and records judgments for every rater of one ranking database.

    Args:
        store: the database (prompts, raters, judgments).
        mode: "best" (find the best) or "full" (a full ranking by merge-insertion; pairs
            only).
        screen: "pair" (knockout, then Bradley-Terry top-up), "best-of-K" or
            "best-worst-K" (K = 3..6: every candidate once, then the leader against
            Thompson-sampled challengers under a Plackett-Luce posterior; `choice`).
        budget: screens per prompt and rater in "best" mode (default: `default_budget`
            pairs, or as many K-way screens as show `default_views` items).
        threshold: stop a prompt when P(leader is the best) reaches this.
        repeat_rate: share of steps that re-show an earlier pair, sides swapped (QC).
        seed: bracket orders, sides and repeats.
    """

    def __init__(
        self,
        store: RankingStore,
        *,
        mode: Mode = "best",
        screen: str = "pair",
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
        self.screen: Screen = parse_screen(screen)
        if mode == "full" and self.screen.kind != "pair":
            raise ValueError("a full ranking (mode full) asks for pairs: use screen pair")
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
            "screen": self.screen.name,
            "budget": self.budget,
            "threshold": self.threshold,
            "repeat_rate": self.repeat_rate,
            "seed": self.seed,
        }

    def _make_scheduler(
        self, prompt_idx: int
    ) -> KnockoutThenBT | MergeInsertionSort | ChoiceScheduler:
        n = len(self.prompts[prompt_idx].candidates)
        # The same bracket for every rater, so raters share first-round pairs (agreement).
        seed = int(_unit(self.seed, self.prompts[prompt_idx].id) * 2**31)
        if self.mode == "full":
            return MergeInsertionSort(n, seed=seed)
        if self.screen.kind != "pair":
            k = min(self.screen.k, n)
            screens = self.budget if self.budget is not None else -(-default_views(n) // k)
            return ChoiceScheduler(
                n, self.screen, budget=screens * k, threshold=self.threshold, seed=seed
            )
        budget = self.budget if self.budget is not None else default_budget(n)
        return KnockoutThenBT(n, budget=budget, threshold=self.threshold, seed=seed)

    def _next_uncached(
        self, prompt_idx: int, history: tuple[Judgment, ...] | tuple[Choice, ...]
    ) -> tuple[int, ...] | None:
        scheduler = self._schedulers[prompt_idx]
        if isinstance(scheduler, ChoiceScheduler):
            return scheduler.next_set(history)  # type: ignore[arg-type]
        return scheduler.next_pair(history)  # type: ignore[arg-type]

    def history(self, done: Sequence[StoredJudgment]) -> tuple[Judgment, ...] | tuple[Choice, ...]:
        """A rater's scheduled answers (QC repeats left out) as their scheduler reads them."""
        scheduled = [j for j in done if j.kind == "schedule"]
        if self.screen.kind == "pair":
            return tuple(as_schedule_judgment(j) for j in scheduled)
        return tuple(as_choice(j) for j in scheduled)

    # --- what is due -------------------------------------------------------------

    def prompt_index(self, prompt_id: str) -> int:
        if prompt_id not in self._index:
            raise RankRequestError(404, f"unknown prompt_id {prompt_id!r}")
        return self._index[prompt_id]

    def due(self, rater: str) -> Due | None:
        """The next screen for `rater`, or None when every prompt is finished."""
        with self._lock:
            for prompt_idx in range(len(self.prompts)):
                due = self._due_in(rater, prompt_idx)
                if due is not None:
                    return due
            return None

    def _due_in(self, rater: str, prompt_idx: int) -> Due | None:
        done = self.store.judgments(rater=rater, prompt_idx=prompt_idx)
        items = self._next(prompt_idx, self.history(done))
        if items is None:
            return None
        step = len(done)
        prompt_id = self.prompts[prompt_idx].id
        repeat = self._repeat_due(rater, prompt_idx, done)
        if repeat is not None:  # the same items, every one in another slot
            unit = _unit(self.seed, "move", rater, prompt_id, step)
            shift = 1 + int(unit * (len(repeat.shown) - 1))
            return Due(prompt_idx, step, moved(repeat.shown, shift), "repeat", repeat.id)
        if len(items) == 2:
            a, b = int(items[0]), int(items[1])
            if _unit(self.seed, "side", rater, prompt_id, step) < 0.5:
                a, b = b, a
            return Due(prompt_idx, step, (a, b), "schedule")
        # Slots in a seeded random order, so that a rater's slot bias is not a bias
        # towards the leader (which the scheduler lists first).
        rng = np.random.default_rng(int(_unit(self.seed, "slots", rater, prompt_id, step) * 2**63))
        order = rng.permutation(len(items))
        return Due(prompt_idx, step, tuple(int(items[k]) for k in order), "schedule")

    def _repeat_due(
        self, rater: str, prompt_idx: int, done: Sequence[StoredJudgment]
    ) -> StoredJudgment | None:
        """An earlier screen to show again (its items in other slots), on about
        `repeat_rate` of steps; never one of the last `REPEAT_GAP` screens, so the rater
        does not simply remember."""
        if len(done) <= REPEAT_GAP or done[-1].kind == "repeat":
            return None
        step = len(done)
        if _unit(self.seed, "repeat", rater, self.prompts[prompt_idx].id, step) >= self.repeat_rate:
            return None
        repeated = {j.repeat_of for j in done if j.kind == "repeat"}
        recent = {frozenset(j.shown) for j in done[-REPEAT_GAP:]}
        options = [
            j
            for j in done[:-REPEAT_GAP]
            if j.kind == "schedule" and j.id not in repeated and frozenset(j.shown) not in recent
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
        """Record the answer to the pair due; anything else is refused unchanged."""
        if result not in RESULTS:
            raise RankRequestError(422, f"result must be one of {', '.join(RESULTS)}")
        prompt_idx = self.prompt_index(prompt_id)
        with self._lock, self.store.transaction() as db:
            due = self.due(rater)
            if due is not None and len(due.shown) > 2:
                raise RankRequestError(
                    422,
                    f"this screen shows {len(due.shown)} items, not a pair: answer it with "
                    f"the best{' and the worst' if self.screen.asks_worst else ''} "
                    f"(POST /api/choices); {self._where(due)}",
                )
            self._check_due(due, prompt_idx, step, (left_id, right_id))
            assert due is not None
            return self.store.insert_judgment(
                db, self._fields(rater, due, result=result, seconds=seconds)
            )

    def submit_choice(
        self,
        rater: str,
        *,
        prompt_id: str,
        step: int,
        shown_ids: Sequence[str],
        best_id: str,
        worst_id: str | None = None,
        seconds: float | None = None,
    ) -> StoredJudgment:
        """Record the best (and the worst) of the multi-way screen due; a stale or
        replayed screen is refused with 409, an answer that does not fit the screen (an
        item not on it, best = worst, a worst missing or not asked for) with 422."""
        prompt_idx = self.prompt_index(prompt_id)
        with self._lock, self.store.transaction() as db:
            due = self.due(rater)
            self._check_due(due, prompt_idx, step, tuple(shown_ids))
            assert due is not None
            where = self._where(due)
            ids = [c.id for c in self.prompts[due.prompt_idx].candidates]
            if len(due.shown) == 2:
                raise RankRequestError(422, f"this screen is a pair: answer left or right; {where}")
            picks = {"best": best_id, "worst": worst_id}
            if self.screen.asks_worst and worst_id is None:
                raise RankRequestError(422, f"this screen asks for the worst too; {where}")
            if not self.screen.asks_worst and worst_id is not None:
                raise RankRequestError(422, f"this screen asks for the best only; {where}")
            if worst_id is not None and worst_id == best_id:
                raise RankRequestError(
                    422, f"the best and the worst are the same item ({best_id!r}); {where}"
                )
            on_screen = {ids[k]: k for k in due.shown}
            for role, item in picks.items():
                if item is not None and item not in on_screen:
                    raise RankRequestError(
                        422, f"the {role} ({item!r}) is not on the screen; {where}"
                    )
            fields = self._fields(rater, due, result=CHOICE, seconds=seconds)
            fields["best_idx"] = on_screen[best_id]
            fields["worst_idx"] = on_screen[worst_id] if worst_id is not None else None
            return self.store.insert_judgment(db, fields)

    def _fields(
        self, rater: str, due: Due, *, result: str, seconds: float | None
    ) -> dict[str, Any]:
        candidates = self.prompts[due.prompt_idx].candidates
        return {
            "rater": rater,
            "prompt_idx": due.prompt_idx,
            "prompt_id": self.prompts[due.prompt_idx].id,
            "step": due.step,
            "kind": due.kind,
            "left_idx": due.left,
            "right_idx": due.right,
            "left_id": candidates[due.left].id,
            "right_id": candidates[due.right].id,
            "shown": list(due.shown) if len(due.shown) > 2 else None,
            "result": result,
            "repeat_of": due.repeat_of,
            "seconds": seconds,
        }

    def _where(self, due: Due) -> str:
        what = "pair" if len(due.shown) == 2 else "screen"
        return f"the {what} due is step {due.step} of prompt {self.prompts[due.prompt_idx].id!r}"

    def _check_due(
        self, due: Due | None, prompt_idx: int, step: int, shown_ids: tuple[str, ...]
    ) -> None:
        prompt_id = self.prompts[prompt_idx].id
        if due is None:
            raise RankRequestError(409, "nothing is due: this rater has finished every prompt")
        where = self._where(due)
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
        expected = tuple(candidates[k].id for k in due.shown)
        if shown_ids != expected:
            if len(expected) == 2:
                mismatch = f"the pair submitted {shown_ids!r} is not the pair shown {expected!r}"
            else:
                mismatch = (
                    f"the items submitted {list(shown_ids)} are not those shown {list(expected)}"
                )
            raise RankRequestError(409, f"{mismatch}; {where}")

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
        """For the page: "prompt 2 of 5, comparison 23 of about 70" (pairs) or "screen 12
        of about 75" (multi-way screens)."""
        prompts = len(self.prompts)
        unit = "comparison" if self.screen.kind == "pair" else "screen"
        if due is None:
            return {
                "prompt": prompts,
                "prompts": prompts,
                "unit": unit,
                "comparison": None,
                "about": None,
            }
        scheduler = self._schedulers[due.prompt_idx]
        n = len(self.prompts[due.prompt_idx].candidates)
        if isinstance(scheduler, KnockoutThenBT):
            about = scheduler.expected_comparisons()
        elif isinstance(scheduler, ChoiceScheduler):
            about = scheduler.expected_screens()
        else:
            about = math.ceil(math.log2(math.factorial(n)))
        about = round(about * (1 + self.repeat_rate))
        return {
            "prompt": due.prompt_idx + 1,
            "prompts": prompts,
            "unit": unit,
            "comparison": due.step + 1,
            "about": max(about, due.step + 1),
        }

    def rater_choice(self, rater: str, prompt_idx: int) -> int:
        """The candidate this rater's answers pick as the best of a prompt."""
        history = self.history(self.store.judgments(rater=rater, prompt_idx=prompt_idx))
        scheduler = self._schedulers[prompt_idx]
        if isinstance(scheduler, MergeInsertionSort):
            return scheduler.ranking(history)[0]  # type: ignore[arg-type]
        return scheduler.leader(history)[0]  # type: ignore[arg-type]

    def scores(self, prompt_idx: int) -> dict[str, Any]:
        """Scores of a prompt's candidates from every rater's answers (QC repeats left
        out: they would count one screen twice): Bradley-Terry for pairs, Plackett-Luce
        for multi-way screens; item views, comparisons implied and wins (picked as the
        better, or the best) per candidate."""
        n = len(self.prompts[prompt_idx].candidates)
        judged = [j for j in self.store.judgments(prompt_idx=prompt_idx) if j.kind == "schedule"]
        if self.screen.kind == "pair":
            mean, cov = bt_posterior(n, [as_schedule_judgment(j) for j in judged])
        else:
            mean, cov = pl_posterior(n, as_choices(judged))
        probabilities = p_best(mean, cov, seed=self.seed)
        views = np.zeros(n, int)
        comparisons = np.zeros(n, int)
        won = np.zeros(n, int)
        for j in judged:
            views[list(j.shown)] += 1
            for winner, loser in j.implied_pairs():
                comparisons[[winner, loser]] += 1
            best = j.best_idx if j.is_choice else j.winner
            if best is not None:
                won[best] += 1
        return {
            "mean": mean,
            "sd": np.sqrt(np.diag(cov)),
            "p_best": probabilities,
            "views": views,
            "comparisons": comparisons,
            "wins": won,
        }

    def cost(self, rater: str | None = None) -> dict[str, int]:
        """Human effort, counted honestly: screens answered, item views (an item shown on
        a screen) and the pairwise comparisons the answers imply (QC repeats included:
        the rater did them)."""
        judged = self.store.judgments(rater=rater)
        return {
            "screens": len(judged),
            "item_views": sum(len(j.shown) for j in judged),
            "comparisons_implied": sum(len(j.implied_pairs()) for j in judged),
        }


DEFAULTS: dict[str, Any] = {
    "mode": "best",
    "screen": "pair",
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


def _is_screen(value: Any) -> bool:
    try:
        parse_screen(value)
    except (ValueError, AttributeError):
        return False
    return True


RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "mode": (lambda v: v in MODES, f"one of {', '.join(MODES)}"),
    "screen": (_is_screen, "pair, best-of-K or best-worst-K with K = 3..6"),
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
    screen = settings.get("screen", "pair")
    if settings.get("mode") == "full" and screen != "pair":
        raise RankingStoreError(f"mode full asks for pairs; it cannot use screen {screen!r}")


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
