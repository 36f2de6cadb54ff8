"""The refine stage of program evolution: declared parameters (or float literals) fitted with
a counted budget of evaluator calls in the real sandbox; a SIGKILL during fitting loses
nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import openended
from openended.apps.show import refine_summary
from openended.config import load_config
from openended.domains.program.domain import ProgramConfig, ProgramDomain
from openended.domains.program.refine import (
    RefineSettings,
    declared_parameters,
    float_literals,
    substitute,
    tune,
)
from openended.lm.scripted import ScriptedLM
from openended.store import RunStore, StoreError

REPO = Path(__file__).resolve().parents[2]

INITIAL = '''\
"""Toy task: place a and b."""

SCALE = 2.5


# EVOLVE-BLOCK-START
def params():
    """Return (a, b)."""
    return 1, 1
# EVOLVE-BLOCK-END
'''

EVALUATOR = '''\
"""Score: -(a - 1.7)^2 - (b + 0.3)^2; a above 3 makes the evaluator fail."""
import importlib.util


def _load(path):
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluate(path):
    a, b = _load(path).params()
    if a > 3:
        raise ValueError(f"a = {a} is out of range")
    return {"score": -((a - 1.7) ** 2) - (b + 0.3) ** 2}
'''

STAGE1 = """

def evaluate_stage1(path):
    a, b = _load(path).params()
    if a > 3:
        raise ValueError(f"a = {a} is out of range")
    return {"score": -((a - 1.7) ** 2)}
"""

CHILD = 'def params():\n    """Return (a, b)."""\n    return 2.9 * 1.0, 0.5\n'
PARAMETRIC = (
    'def params():\n    """Return (a, b)."""\n    PARAMS = [2.9, 0.5]  # fitted\n'
    "    return PARAMS[0] * 1.0, PARAMS[1]\n"
)


def test_literals_are_found_in_the_region_only_and_replaced_in_place() -> None:
    program = "K = 0.5\n\ndef f(x):\n    return -1.5 * x + 2.0 ** x + 3  # 4.5\n"
    begin = program.index("def")
    literals = float_literals(program, begin, len(program))
    assert [lit.value for lit in literals] == [1.5, 2.0]
    changed = substitute(program, literals, [-0.25, 3.0])
    assert "return -(-0.25) * x + 3.0 ** x + 3  # 4.5" in changed
    assert changed.startswith("K = 0.5\n")
    namespace: dict = {}
    exec(changed, namespace)
    assert namespace["f"](1.0) == 0.25 + 3.0 + 3


def test_declared_parameters_are_the_params_numbers_with_their_signs() -> None:
    program = (
        "PARAMS = [9.0]\n\ndef f(x):\n    PARAMS = [1, -0.5, +2e-3, x, 'a']\n"
        "    scale: tuple = 4.5\n    return PARAMS[0] * x + 7.5\n"
    )
    begin = program.index("def")
    found = declared_parameters(program, begin, len(program))
    assert [p.value for p in found] == [1.0, -0.5, 0.002]  # not 9.0 (outside), x, 'a', 7.5
    assert all(p.signed for p in found)
    changed = substitute(program, found, [2.0, -1.25, 3.0])
    assert "    PARAMS = [2.0, -1.25, 3.0, x, 'a']\n" in changed
    assert changed.startswith("PARAMS = [9.0]\n")
    assert declared_parameters("def f(:\n", 0, 9) == []  # not Python: nothing to fit
    annotated = "PARAMS: list[float] = (0.5, 1.5)\n"
    assert [p.value for p in declared_parameters(annotated, 0, len(annotated))] == [0.5, 1.5]


@pytest.fixture
def domain_for(tmp_path: Path):
    made: list[ProgramDomain] = []

    def make(refine: dict | None, *, cascade: bool = False) -> ProgramDomain:
        (tmp_path / "initial.py").write_text(INITIAL)
        (tmp_path / "evaluator.py").write_text(EVALUATOR + (STAGE1 if cascade else ""))
        config = ProgramConfig(
            initial=tmp_path / "initial.py",
            evaluator=tmp_path / "evaluator.py",
            workers=2,
            refine=refine,
        )
        made.append(ProgramDomain(config))
        return made[-1]

    yield make
    for domain in made:
        domain.close()


def _counting(domain: ProgramDomain) -> list[str]:
    """Count every evaluator call (each one still runs in the sandbox)."""
    calls: list[str] = []
    evaluator = domain.evaluator
    run_stage, run = evaluator.run_stage, evaluator.run

    async def counted_stage(text: str, stage: str):
        calls.append(text)
        return await run_stage(text, stage)

    async def counted_run(text: str):
        calls.append(text)
        return await run(text)

    evaluator.run_stage, evaluator.run = counted_stage, counted_run  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("method", ["nelder-mead", "cma", "scan"])
@pytest.mark.parametrize("cascade", [False, True])
def test_tuning_stays_in_budget_survives_failures_and_stores_what_it_evaluated(
    domain_for, method: str, cascade: bool
) -> None:
    domain = domain_for(
        {"evaluations": 10, "method": method, "step": 0.5, "target": "floats"}, cascade=cascade
    )
    calls = _counting(domain)
    (evaluation,) = asyncio.run(domain.evaluate([CHILD]))
    refine = evaluation.details["refine"]
    # the child's own evaluation and at most the budget of tuning calls, all counted
    assert len(calls) - 1 == refine["evaluations"] <= 10
    assert evaluation.evaluations == len(calls)
    assert evaluation.valid and refine["gain"] > 0  # 2.9 sits near the failing edge (a > 3)
    start = -((2.9 - 1.7) ** 2) - (0.5 + 0.3) ** 2
    assert evaluation.metrics["score"] == pytest.approx(start + refine["gain"])
    tuned = evaluation.genome
    assert tuned is not None and tuned != CHILD
    assert domain.region.assemble(tuned) in calls  # the stored program was evaluated
    plain = domain_for(None, cascade=cascade)
    (again,) = asyncio.run(plain.evaluate([tuned]))
    assert again.fitness == evaluation.fitness
    assert again.descriptors == evaluation.descriptors


@pytest.mark.parametrize("cascade", [False, True])
def test_declared_parameters_are_fitted_by_default_and_recorded(domain_for, cascade) -> None:
    domain = domain_for({}, cascade=cascade)  # the defaults: fit PARAMS
    calls = _counting(domain)
    plain_floats = CHILD  # float literals but no PARAMS: left alone
    fitted, alone = asyncio.run(domain.evaluate([PARAMETRIC, plain_floats]))
    refine = fitted.details["refine"]
    budget = domain.config.refine.evaluations  # type: ignore[union-attr]
    assert refine["target"] == "params" and refine["proposed_values"] == [2.9, 0.5]
    assert refine["gain"] > 0 and refine["evaluations"] <= budget
    a, b = refine["fitted_values"]
    assert fitted.genome is not None and f"PARAMS = [{a!r}, {b!r}]" in fitted.genome
    assert abs(a - 1.7) < abs(2.9 - 1.7)  # towards the optimum (stage 1 scores a alone)
    assert fitted.evaluations == 1 + refine["evaluations"]
    summary = refine_summary(dict(fitted.details))  # what show and the candidate page print
    assert summary is not None and "proposed [2.9, 0.5]" in summary and f"fitted [{a!r}" in summary
    assert alone.valid and alone.genome is None and "refine" not in alone.details
    assert len(calls) == 1 + refine["evaluations"] + 1
    assert domain.fits_parameters is False  # the seed declares no PARAMS: prompts unchanged
    assert "PARAMS" not in domain.prompt_context()["task"]


def test_a_failing_region_is_left_alone_and_no_literals_means_no_tuning(domain_for) -> None:
    domain = domain_for({"evaluations": 6, "target": "floats"})
    calls = _counting(domain)
    bad = 'def params():\n    """Return (a, b)."""\n    return 3.5, 0.5\n'
    integers = 'def params():\n    """Return (a, b)."""\n    return 2, 0\n'
    failed, whole = asyncio.run(domain.evaluate([bad, integers]))
    assert not failed.valid and "out of range" in (failed.feedback or "")
    assert whole.valid and whole.genome is None and "refine" not in whole.details
    assert len(calls) == 2


RUNNER = textwrap.dedent(
    """
    import sys
    import openended
    from openended.lm.scripted import ScriptedLM
    from tests.domains.test_refine import parameter_script

    lm = ScriptedLM(parameter_script, latency=0.01)
    if sys.argv[1] == "run":
        openended.run(eval(sys.argv[2]), lm=lm)
    else:
        openended.resume(sys.argv[2], lm=lm)
    """
)


def parameter_script(request, sample: int) -> str:
    """Rewrites with different parameter values, a function of the request's seed."""
    seed = (request.seed or 0) * 31 + sample
    a, b = 0.3 + (seed % 17) / 7, -1.0 + (seed % 11) / 5
    return f"\n    PARAMS = [{a:.3f}, {b:.3f}]\n    return PARAMS[0], PARAMS[1]\n"


def _snapshot(run_dir: Path) -> list[tuple]:
    with RunStore(run_dir) as store:
        return [
            (c.id, c.batch, c.genome, c.proposed, c.status, c.fitness, c.details)
            for c in store.candidates()
        ]


def _batches(run_dir: Path) -> int:
    try:
        with RunStore(run_dir) as store:
            return store.last_batch() or 0
    except (StoreError, Exception):
        return 0


@pytest.mark.slow
def test_resume_after_sigkill_during_refine_gives_the_same_run(tmp_path: Path) -> None:
    (tmp_path / "initial.py").write_text(INITIAL)
    (tmp_path / "evaluator.py").write_text(EVALUATOR)
    config = {
        "runs_dir": str(tmp_path / "runs"),
        "name": "killed",
        "search": {"batch_size": 4},
        "operators": {
            "rewrite": {"weight": 1.0},
            "diff": {"weight": 0},
            "funsearch": {"weight": 0},
        },
        "budget": {"max_evaluations": 150, "max_seconds": 0},
        "domain": {
            "name": "program",
            "initial": str(tmp_path / "initial.py"),
            "evaluator": str(tmp_path / "evaluator.py"),
            "refine": {"evaluations": 8},
        },
    }
    load_config(config)  # a valid config
    reference = openended.run({**config, "name": "reference"}, lm=ScriptedLM(parameter_script))
    expected = _snapshot(reference.run_dir)
    assert any(row[3] is not None for row in expected)  # some children were tuned
    run_dir = tmp_path / "runs" / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", RUNNER, "run", repr(config)], cwd=REPO, env=env
    )
    deadline = time.time() + 120
    while _batches(run_dir) < 2 and process.poll() is None:
        assert time.time() < deadline, "search made no progress"
        time.sleep(0.005)
    time.sleep(0.05)  # inside the next batch: its children are being tuned
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = _snapshot(run_dir)
    assert 2 <= len(killed_at) < len(expected)  # killed in the middle of the run
    assert killed_at == expected[: len(killed_at)]
    resumed = subprocess.run(
        [sys.executable, "-c", RUNNER, "resume", str(run_dir)], cwd=REPO, env=env, timeout=300
    )
    assert resumed.returncode == 0
    assert _snapshot(run_dir) == expected


def test_children_that_differ_only_in_their_parameters_are_one_structure(domain_for) -> None:
    domain = domain_for({})
    other_values = PARAMETRIC.replace("[2.9, 0.5]", "[1.0, -3.0]")
    other_structure = PARAMETRIC.replace("PARAMS[0] * 1.0", "PARAMS[0] * 2.0")
    assert domain.fingerprint(PARAMETRIC) == domain.fingerprint(other_values)
    assert domain.fingerprint(PARAMETRIC) != domain.fingerprint(other_structure)
    plain = domain_for({"enabled": False})  # nothing fits them: the values matter
    assert plain.fingerprint(PARAMETRIC) != plain.fingerprint(other_values)


def test_a_params_list_too_short_for_the_code_is_lengthened_with_zeros(domain_for) -> None:
    domain = domain_for({"evaluations": 4})
    short = PARAMETRIC.replace("PARAMS[0] * 1.0", "PARAMS[0] + PARAMS[3]")
    (evaluation,) = asyncio.run(domain.evaluate([short]))
    assert evaluation.valid, evaluation.feedback  # not an IndexError
    assert evaluation.genome is not None and "PARAMS[3]" in evaluation.genome
    assert evaluation.details["refine"]["proposed_values"] == [2.9, 0.5, 0.0, 0.0]
    off = domain_for({"enabled": False})  # no fitting: the program is left as written
    (failed,) = asyncio.run(off.evaluate([short]))
    assert not failed.valid and "IndexError" in (failed.feedback or "")


def test_a_seed_that_declares_parameters_is_fitted_once_and_the_prompts_say_so(
    tmp_path: Path,
) -> None:
    seed_region = 'def params():\n    """Return (a, b)."""\n    return 1, 1\n'
    (tmp_path / "initial.py").write_text(INITIAL.replace(seed_region, PARAMETRIC))
    (tmp_path / "evaluator.py").write_text(EVALUATOR)
    config = ProgramConfig(initial=tmp_path / "initial.py", evaluator=tmp_path / "evaluator.py")
    domain = ProgramDomain(config)
    try:
        assert domain.fits_parameters and "PARAMS" in domain.prompt_context()["task"]
        calls = _counting(domain)
        (first,) = asyncio.run(domain.evaluate([domain.region.initial]))
        (again,) = asyncio.run(domain.evaluate([domain.region.initial]))
        assert first is again and 0 < len(calls) <= config.refine.seed_evaluations  # type: ignore[union-attr]
        assert first.genome is not None and first.details["refine"]["gain"] > 0
        assert domain.seed_evaluation.genome is None  # the seed as written, kept apart
        assert float(first.fitness) > float(domain.seed_evaluation.fitness)  # type: ignore[arg-type]
    finally:
        domain.close()


def test_the_scan_finds_a_new_weight_of_any_scale_and_stays_in_budget() -> None:
    """A weight at zero (a new term) whose best value is far from the unit step: the scan
    tries magnitudes 0.01 .. 10 with both signs, then halves and doubles the best."""
    calls: list[tuple[float, ...]] = []

    async def objective(values: tuple[float, ...]) -> float | None:
        calls.append(values)
        a, w = values
        if w > 50:
            return None  # fails at some values: scored worst, the scan goes on
        return -((a - 2.0) ** 2) - (w + 8.0) ** 2

    result = asyncio.run(
        tune(
            [2.0, 0.0],
            objective,
            start_objective=-64.0,
            settings=RefineSettings(method="scan"),
            budget=12,
            key="k",
        )
    )
    assert len(calls) == len(result.trials) <= 12
    assert result.best is not None and result.best.values == (2.0, -10.0)
    assert calls[0][0] == 2.0  # the weight at zero is scanned first


def test_nelder_mead_children_outnumbering_the_default_executor_do_not_deadlock() -> None:
    """Each Nelder–Mead fit runs in a thread that waits for evaluations; the sandbox runs
    those in the loop's default executor. With the fits in that executor too, a batch with
    more children than its workers waited forever (found with 16 children on 2 cores)."""

    async def objective(values: tuple[float, ...]) -> float | None:
        return await asyncio.to_thread(lambda: -((values[0] - 3.0) ** 2))

    async def batch() -> list:
        from concurrent.futures import ThreadPoolExecutor

        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=2))
        settings = RefineSettings(method="nelder-mead")
        return await asyncio.gather(
            *(
                tune(
                    [1.0], objective, start_objective=-4.0, settings=settings, budget=8, key=str(i)
                )
                for i in range(6)
            )
        )

    results = asyncio.run(asyncio.wait_for(batch(), timeout=60))
    assert all(r.best is not None and r.best.score > -4.0 for r in results)


def test_cma_restarts_when_the_scores_are_flat_and_spends_its_budget() -> None:
    """An argmax over priorities is flat near the start; CMA-ES stops there. It restarts
    from the best point with a wider step while calls are left, and finds what lies far."""
    calls: list[tuple[float, ...]] = []

    async def objective(values: tuple[float, ...]) -> float | None:
        calls.append(values)
        return 1.0 if abs(values[0]) > 1.5 else 0.0

    result = asyncio.run(
        tune(
            [0.0, 0.0],
            objective,
            start_objective=0.0,
            settings=RefineSettings(method="cma", step=0.05),
            budget=48,
            key="k",
        )
    )
    assert len(calls) == 48
    assert result.best is not None and result.best.score == 1.0


def test_a_seed_without_params_is_warned_about_when_the_refine_stage_fits_params(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "initial.py").write_text("def f():\n    return 1.5\n")
    (tmp_path / "evaluator.py").write_text(
        "import importlib.util\n\n\ndef evaluate(path):\n"
        "    spec = importlib.util.spec_from_file_location('c', path)\n"
        "    m = importlib.util.module_from_spec(spec)\n    spec.loader.exec_module(m)\n"
        "    return {'score': m.f()}\n"
    )
    for refine, warned in (({}, True), ({"target": "floats"}, False), (None, False)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="openended.domains.program.domain"):
            domain = ProgramDomain(
                ProgramConfig(
                    initial=tmp_path / "initial.py",
                    evaluator=tmp_path / "evaluator.py",
                    function="f",
                    refine=refine,
                )
            )
            domain.close()
        assert ("declares no PARAMS" in caplog.text) is warned, (refine, caplog.text)
        if warned:
            assert str(tmp_path / "initial.py") in caplog.text and "floats" in caplog.text
