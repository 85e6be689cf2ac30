"""The package's shape: no import cycles between its modules, and the lower layers never reach up
(loading a checkpoint to score audio must not import the training engine)."""

from __future__ import annotations

import pytest

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "helpers"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the helpers modules its import statements name, from the source.

    ``from a.b import c`` names ``a.b`` (and ``a.b.c`` when that is a module). The package
    ``__init__``s Python runs on the way are not edges: a package that re-exports its own modules
    would otherwise look like a cycle with each of them. Which modules an import really loads is
    checked at run time by :func:`test_scoring_and_loading_do_not_pull_in_the_training_engine`."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [module] + [f"{module}.{a.name}" for a in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_helpers_modules():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (the lower module must not import the higher): " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


def test_every_module_lives_in_a_subpackage_by_job():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py"], top
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__") == [
        "bench",
        "core",
        "data",
        "evaluation",
        "experiments",
        "features",
        "models",
        "recordings",
        "reporting",
        "training",
    ]


@pytest.mark.slow
def test_scoring_and_loading_do_not_pull_in_the_training_engine():
    """What importing a module really loads (package __init__s included), in a fresh interpreter."""
    code = (
        "import importlib, sys; importlib.import_module(sys.argv[1]); "
        "print(' '.join(m for m in sys.modules if m.startswith(('helpers.training', 'helpers.experiments'))))"
    )
    for module in (
        "helpers.evaluation.predict",
        "helpers.evaluation.embeddings",
        "helpers.models.checkpoint",
        "helpers.features.extract",
        "helpers.data.corpus",
    ):
        out = subprocess.run(
            [sys.executable, "-c", code, module], capture_output=True, text=True, cwd=REPO_ROOT, check=True
        ).stdout.split()
        assert not out, f"importing {module} loads {out}"


def test_nothing_imports_the_command_line_or_the_bench():
    graph = import_graph()
    for module, targets in graph.items():
        if module in ("helpers.__main__", "helpers.bench"):
            continue
        assert not targets & {"helpers.__main__", "helpers.bench"}, module
    assert "helpers.__main__" not in graph["helpers.bench"]


#: Names that must be defined (assigned at a module's top level) in one module of the package only.
ONE_OWNER = (
    "EVENT_COLUMNS",
    "SPLITS",
    "N_MELS",
    "PROJECT_ROOT",
    "AUDIO_EXTENSIONS",
    "AUDIO_SUFFIXES",
    "EMBEDDINGS_SUFFIX",
    "SAMPLE_RATE",
    "CLIP_SECONDS",
)


def top_level_definitions() -> dict[str, list[str]]:
    """Name -> the modules that assign it at their top level (imports and re-exports are not definitions)."""
    found: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text(), str(path)).body:
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign)
                else []
            )
            for target in targets:
                if isinstance(target, ast.Name):
                    found.setdefault(target.id, []).append(_module_name(path))
    return found


def test_each_constant_has_one_owner():
    found = top_level_definitions()
    twice = {name: modules for name, modules in found.items() if name in ONE_OWNER and len(modules) > 1}
    assert not twice, f"defined in more than one module (import them from one): {twice}"
    assert found["AUDIO_EXTENSIONS"] == ["helpers.data.audio_files"]


def test_no_other_list_of_audio_extensions():
    """A tuple or list holding both '.wav' and '.flac' is an extension list: only helpers.data.audio_files has one."""
    holders = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                values = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                if {".wav", ".flac"} <= values:
                    holders.add(_module_name(path))
    assert holders == {"helpers.data.audio_files"}, holders
