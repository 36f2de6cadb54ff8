"""What people rank: prompts, each with N candidate outputs, read from a JSONL file or
from a run directory's archive."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from openended.errors import UserError
from openended.jsonl import read_jsonl

CODE_DOMAINS = ("program", "puzzles", "symbolic_regression")


class RankInputError(UserError, ValueError):
    """The input to rank is malformed; the message names the file, line and key."""


@dataclass(frozen=True)
class Candidate:
    id: str
    text: str


@dataclass(frozen=True)
class RankPrompt:
    """One prompt and the candidates to compare; `language` names the code language when
    the candidates are code (highlighted in the page)."""

    id: str
    prompt: str
    candidates: tuple[Candidate, ...]
    language: str | None = None


def load_rank_input(path: str | Path) -> list[RankPrompt]:
    """Prompts from a JSONL file or a run directory (its archive's elites)."""
    path = Path(path)
    if path.is_dir():
        return [_from_run(path)]
    if not path.exists():
        raise RankInputError(f"{path}: no such file or run directory")
    return _from_jsonl(path)


def input_fingerprint(prompts: list[RankPrompt]) -> str:
    """A hash of what is ranked, so a ranking database is never reused for other data."""
    payload = [
        [p.id, p.prompt, p.language, [[c.id, c.text] for c in p.candidates]] for p in prompts
    ]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def _from_jsonl(path: Path) -> list[RankPrompt]:
    """Each line: ``{"prompt": str, "candidates": [str | {"id": str, "text": str}, ...]}``,
    optional ``"prompt_id"`` (default ``p<line>``) and ``"language"`` (e.g. ``"python"``)."""
    prompts: list[RankPrompt] = []
    seen: dict[str, int] = {}
    for number, row in read_jsonl(path, RankInputError):
        where = f"{path}: line {number}"
        if not isinstance(row, dict):
            raise RankInputError(f"{where}: expected an object with 'prompt' and 'candidates'")
        unknown = set(row) - {"prompt", "candidates", "prompt_id", "language"}
        if unknown:
            raise RankInputError(
                f"{where}: unknown key {sorted(unknown)[0]!r} (expected prompt, candidates, "
                "prompt_id, language)"
            )
        prompt = row.get("prompt")
        if not isinstance(prompt, str):
            raise RankInputError(f"{where}: key 'prompt' must be a string")
        prompt_id = row.get("prompt_id", f"p{number}")
        if not isinstance(prompt_id, str) or not prompt_id:
            raise RankInputError(f"{where}: key 'prompt_id' must be a non-empty string")
        if prompt_id in seen:
            raise RankInputError(
                f"{where}: prompt_id {prompt_id!r} already used on line {seen[prompt_id]}"
            )
        seen[prompt_id] = number
        language = row.get("language")
        if language is not None and not isinstance(language, str):
            raise RankInputError(f"{where}: key 'language' must be a string")
        candidates = _candidates(row.get("candidates"), where)
        prompts.append(RankPrompt(prompt_id, prompt, candidates, language))
    if not prompts:
        raise RankInputError(f"{path}: no prompts (the file is empty)")
    return prompts


def _candidates(value: object, where: str) -> tuple[Candidate, ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise RankInputError(f"{where}: key 'candidates' must be a list of at least 2 outputs")
    candidates = []
    for index, item in enumerate(value):
        if isinstance(item, str):
            candidates.append(Candidate(str(index), item))
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            candidate_id = item.get("id", str(index))
            if not isinstance(candidate_id, str | int):
                raise RankInputError(f"{where}: candidates[{index}]: 'id' must be a string")
            candidates.append(Candidate(str(candidate_id), item["text"]))
        else:
            raise RankInputError(
                f"{where}: candidates[{index}]: expected a string or an object with 'text'"
            )
    ids = [c.id for c in candidates]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise RankInputError(f"{where}: candidate id {duplicates[0]!r} appears twice")
    return tuple(candidates)


def _from_run(run_dir: Path) -> RankPrompt:
    """The archive's elites of a run, as candidates of one prompt (the run's task)."""
    from openended.run_dir import RunDir
    from openended.store.run_store import StoreError

    run = RunDir(run_dir)
    try:
        config = run.config()
        with run.store() as store:
            records = [store.candidate(i) for i in sorted(run.elite_ids(store))]
    except (StoreError, ValueError) as exc:
        raise RankInputError(f"{run_dir}: cannot read the run's archive: {exc}") from None
    candidates = tuple(
        Candidate(str(r.id), r.genome) for r in records if r is not None and r.genome is not None
    )
    if len(candidates) < 2:
        raise RankInputError(
            f"{run_dir}: the archive holds {len(candidates)} elite(s); ranking needs at least 2"
        )
    domain = str(config.domain.get("name", ""))
    name = config.name or run_dir.name
    task = _run_task(config.domain)
    prompt = task or f"Run {name}: elites of its {domain} archive. Which is better?"
    return RankPrompt(
        id=name,
        prompt=prompt,
        candidates=candidates,
        language="python" if domain in CODE_DOMAINS else None,
    )


def _run_task(domain: dict) -> str | None:
    """The text domain's task statement, if the run has one."""
    if domain.get("name") != "text":
        return None
    from openended.domains.text.domain import TextConfig, task_from_config

    try:
        options = {k: v for k, v in domain.items() if k != "name"}
        return task_from_config(TextConfig.model_validate(options)).task
    except Exception:  # the page then shows a generic prompt; ranking still works
        return None
