"""The package tree is the architecture: layers import downwards only, and no module
imports itself back through a circle. Read from the source (every import statement,
including those inside functions), so a lazy import cannot hide an upward arrow."""

from __future__ import annotations

import ast
from pathlib import Path

import openended

ROOT = Path(openended.__file__).resolve().parent

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("errors", "textfiles", "jsonl", "sqlite", "stats")),
    ("infrastructure", ("lm", "sandbox", "embeddings")),
    ("domains", ("domains",)),
    ("variation", ("archive", "operators")),
    ("configuration", ("config", "lm.factory")),
    ("parts", ("store", "executor")),
    ("engine", ("engine",)),
    ("front", ("run_dir", "api", "__init__")),
    ("applications", ("apps",)),
)
"""Lowest first; a module may import its own layer and those below. ``lm.factory``
builds a model from the run's `ModelConfig`, so it sits with the configuration."""

DOMAIN_IMPORTS = ("domains", "lm.base", "sandbox", "errors", "textfiles", "jsonl", "embeddings")
"""What a domain may import: other domain modules (its own and `domains.base`), the
language-model protocol, the sandbox, the foundation, and text embeddings (the text
domain's descriptors)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(name: str, path: Path, known: set[str]) -> list[str]:
    """The openended modules that `path` imports (names without the package prefix),
    each once."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, None] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = ("openended." + package).split(".")[: 1 - node.level or None]
                base = ".".join([*parts, base] if base else parts)
            # `from package import module` imports the module (as import-linter reads it)
            names = [f"{base}.{a.name}" for a in node.names]
            modules_named = [n for n in names if _known(n, known)]
            targets = modules_named + ([base] if len(modules_named) < len(names) else [])
        for target in targets:
            if not target.startswith("openended"):
                continue
            target = target.removeprefix("openended").lstrip(".") or "__init__"
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target in known and target != name:
                found[target] = None
    return list(found)


def _known(dotted: str, known: set[str]) -> bool:
    return dotted.removeprefix("openended").lstrip(".") in known


def layer(name: str) -> int:
    best, best_len = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best >= 0, f"openended.{name} is in no layer: add it to LAYERS"
    return best


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: set(imports(name, path, set(found))) for name, path in found.items()}


def test_every_module_imports_only_its_layer_and_below() -> None:
    upward = [
        f"openended.{a} ({LAYERS[layer(a)][0]}) imports openended.{b} ({LAYERS[layer(b)][0]})"
        for a, targets in graph().items()
        for b in targets
        if layer(b) > layer(a)
    ]
    assert not upward, "\n".join(upward)


def test_domains_import_only_the_contracts_they_need() -> None:
    wrong = [
        f"openended.{a} imports openended.{b}"
        for a, targets in graph().items()
        if a.startswith("domains")
        for b in targets
        if not any(b == allowed or b.startswith(allowed + ".") for allowed in DOMAIN_IMPORTS)
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_circles() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    assert not circles, circles


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from openended.apps.cli import main\n")
    assert list(imports("lm.probe", source, {"apps.cli", "lm"})) == ["apps.cli"]
    assert layer("apps.cli") > layer("lm.probe")
