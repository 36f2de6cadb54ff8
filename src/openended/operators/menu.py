"""Add one weighted term to the value a function returns, chosen from a menu: a grammar
writes the candidate terms from the function's variables, the model picks one, the refine
stage fits its weight.

The issue this answers (35) found that the embedded 135M model writes a usable new term
in 22 of 145 tries (`openended.operators.term`), and that none of those helped. Choosing is
an easier task for a small model than writing: the options are valid expressions by
construction, so every pick is a child the optimiser can work on. This is the "menu of edit
intents" for small models; the grammar is symbolic regression's (Koza 1992): unary
transforms of each variable and binary combinations of two, here also each variable times
one of the function's terms. LLM-SR (Shojaee et al. 2024) and FunSearch (Romera-Paredes et
al. 2024) supply the rest of the idea: structure proposed, weights fitted.

`TextTermMenu` asks for the option's text instead of its letter: a small model copies a
line from its context readily, and a fine-tune on the best options' texts teaches it term
forms as text, where a letter is a pointer into the menu that issue 36 found a 135M model
does not learn to follow (`openended.apps.training.menu_labels`).

`UniformTermMenu` is the ablation: the same menus, the option drawn uniformly (the model's
completion is ignored), so that a bench at equal LM calls measures what the model's choice
adds over a blind pick.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import itertools
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from openended.archive.elite import Elite
from openended.domains.program.weighted_sum import ReturnedValue, returned_value
from openended.lm.base import GenerationRequest
from openended.operators.base import Parsed
from openended.operators.term import TermAddition, add_term

UNARY = (
    "{a}",
    "{a} ** 2",
    "{a} ** 3",
    "np.sqrt(np.abs({a}))",
    "np.exp(-{a})",
    "np.log(np.abs({a}) + 1e-6)",
    "1 / (np.abs({a}) + 1e-6)",
    "({a} > 0)",
    "({a} == 0)",
)
"""Transforms of one variable."""
BINARY = (
    "{a} * {b}",
    "{a} / (np.abs({b}) + 1e-6)",
    "{b} / (np.abs({a}) + 1e-6)",
    "({a} - {b}) ** 2",
    "np.minimum({a}, {b})",
    "np.maximum({a}, {b})",
    "({a} > {b})",
)
"""Combinations of two variables (and of a variable with one of the function's terms)."""
OPTIONS = 8
"""Options shown per prompt: a sample of the grammar's terms (a list of every term would be
hundreds of lines for a function of six variables)."""
LABELS = "ABCDEFGHIJKLMNOP"
OPTION_LINE = re.compile(r"^(#\s+)([A-Z])\.\s(.*)$", re.MULTILINE)
"""An option line of the menu templates (``#   C. <term>``): indent, label, term."""


@functools.lru_cache(maxsize=256)
def term_grammar(returned: ReturnedValue) -> tuple[str, ...]:
    """Every term the grammar writes from the function's variables and terms, normalised
    (``ast.unparse``), distinct, none of them a term the function has already. Cached: each
    child's menu is drawn from it twice (the prompt, then the parse of the reply)."""
    names = list(returned.names)
    operands = [(n, n) for n in names] + [(f"({t})", t) for t in returned.terms]
    written = [form.format(a=a) for a in names for form in UNARY]
    for (a, _), (b, _) in itertools.combinations(operands, 2):
        written.extend(form.format(a=a, b=b) for form in BINARY)
    have = set(returned.terms)
    out: dict[str, None] = {}
    for text in written:
        term = ast.unparse(ast.parse(text, mode="eval").body)
        if term not in have:
            out.setdefault(term, None)
    return tuple(out)


def menu_for(genome: str, seed: int, size: int = OPTIONS) -> list[str]:
    """The options one prompt shows for a parent: `size` grammar terms drawn without
    replacement by `seed` (the request's, so that the completion's parse sees the same)."""
    returned = returned_value(genome)
    if returned is None:
        return []
    terms = term_grammar(returned)
    digest = int.from_bytes(hashlib.sha256(genome.encode()).digest()[:8], "big")
    rng = np.random.default_rng([seed % 2**63, digest])
    picks = rng.choice(len(terms), size=min(size, len(terms)), replace=False)
    return [terms[int(i)] for i in picks]


def option_lines(prompt: str) -> list[tuple[str, str]]:
    """The (label, term) option lines of a menu prompt, in order (empty: not a menu)."""
    return [(label, term) for _, label, term in OPTION_LINE.findall(prompt)]


def chosen_label(completion: str, count: int) -> int | None:
    """The index of the first option label (A, B, ...) the completion names, or None."""
    found = re.search(r"\b([A-Z])\b", completion.strip()[:20])
    if found is None:
        return None
    index = LABELS.find(found.group(1))
    return index if 0 <= index < count else None


class TermMenu(TermAddition):
    """One parent; the prompt shows it (fitted parameters and metrics), then a lettered
    menu of `OPTIONS` new terms from `term_grammar`; the model answers with a letter. The
    child adds the chosen term with a weight of zero, which the refine stage fits."""

    name: ClassVar[str] = "menu"
    default_stop: ClassVar[tuple[str, ...]] = ("\n",)
    default_max_tokens: ClassVar[int] = 3

    def request(self, parents: Sequence[Elite], *, seed: int) -> GenerationRequest:
        options = menu_for(parents[0].genome, seed)
        prompt = self.render(parents, options=list(zip(LABELS, options, strict=False)))
        return self.request_for(prompt, seed=seed)

    def extra_context(self, parents: Sequence[Elite]) -> dict[str, Any]:
        context = super().extra_context(parents)
        context["terms"] = " + ".join(context["terms"]) or "none"
        return context

    def choose(self, completion: str, options: Sequence[str], seed: int) -> int | None:
        """The option the completion picks (None: it names none)."""
        return chosen_label(completion, len(options))

    def parse(self, completion: str, parents: Sequence[Elite]) -> Parsed:
        return Parsed.failed("a menu's completion is parsed with its request (parse_reply)")

    def parse_reply(
        self, completion: str, parents: Sequence[Elite], request: GenerationRequest
    ) -> Parsed:
        returned = returned_value(parents[0].genome)
        if returned is None:
            return Parsed.failed("the parent does not end in `return <value>` with PARAMS")
        seed = request.seed if request.seed is not None else 0
        options = menu_for(parents[0].genome, seed)
        index = self.choose(completion, options, seed)
        if index is None:
            return Parsed.failed(f"the reply names no option: {completion.strip()[:40]!r}")
        genome = add_term(parents[0].genome, returned, options[index])
        problem = self.domain.validate(genome)
        return Parsed.failed(problem) if problem else Parsed(genome)


class UniformTermMenu(TermMenu):
    """The ablation of `TermMenu`: the same prompts and menus, the option drawn uniformly
    by the request's seed; the model's reply is ignored (it still costs the LM call, so
    that arms compared at equal LM calls make the same number of children)."""

    name: ClassVar[str] = "menu_uniform"
    template_name: ClassVar[str | None] = "menu"
    default_max_tokens: ClassVar[int] = 1

    def choose(self, completion: str, options: Sequence[str], seed: int) -> int | None:
        if not options:
            return None
        return int(np.random.default_rng([seed % 2**63, 1]).integers(len(options)))


def named_option(completion: str, options: Sequence[str]) -> int | None:
    """The option whose text the completion copies (compared as normalised Python, its
    first line), else the option its first letter names (``C`` or ``C.``), else None."""
    line = completion.strip().splitlines()[0].strip().rstrip(",;") if completion.strip() else ""
    try:
        written = ast.unparse(ast.parse(line, mode="eval").body)
    except (SyntaxError, ValueError):
        written = None
    if written is not None:
        for index, option in enumerate(options):
            if ast.unparse(ast.parse(option, mode="eval").body) == written:
                return index
    if re.fullmatch(r"[A-Z]\.?", line):
        return chosen_label(line, len(options))
    return None


class TextTermMenu(TermMenu):
    """`TermMenu` whose reply is the chosen option's text (``new_term = <term>``) rather
    than its letter; a reply that copies no option (or names none by letter) is a parse
    failure, as a letter outside the menu is."""

    name: ClassVar[str] = "menu_text"
    default_max_tokens: ClassVar[int] = 40

    def choose(self, completion: str, options: Sequence[str], seed: int) -> int | None:
        return named_option(completion, options)
