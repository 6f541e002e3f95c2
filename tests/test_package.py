"""Packaging: everything lives under ``umt``; nothing generic lands at the top of sys.modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GENERIC = {"pipeline", "cache", "stages", "cli"}

PROBE = (
    "import sys, umt, umt.cli; "
    f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(GENERIC)!r})); "
    "print(callable(umt.load))"
)


def _shadowing_folders(where: Path) -> None:
    """Folders a user may well have where they work, named like the project's own."""
    for name in ("cache", "pipeline", "stages"):
        (where / name).mkdir()
        (where / name / "__init__.py").write_text(f"raise RuntimeError('the user folder {name}/ was imported')\n")
    (where / "cli.py").write_text("raise RuntimeError('the user file cli.py was imported')\n")


def test_importing_the_cli_loads_no_top_level_generic_module(tmp_path):
    _shadowing_folders(tmp_path)
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "True"]


def test_the_cli_works_from_a_folder_holding_cache_and_pipeline(tmp_path, tiny_root):
    _shadowing_folders(tmp_path)
    umt = Path(sys.executable).with_name("umt")
    done = subprocess.run(
        [str(umt), "data", "stats", "--dataset", "tiny", "--data-root", str(tiny_root)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "tweets" in done.stdout and "72" in done.stdout  # 48 + 12 + 12
    done = subprocess.run(
        [sys.executable, "-m", "umt.cli", "models"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "umt-no-visual-gate" in done.stdout, done.stderr


ROOT = Path(__file__).resolve().parents[1]
#: What each layer may import of umt: cli -> stages -> pipeline -> cache, never back.
ALLOWED = {
    "cache": {"cache"},
    "pipeline": {"pipeline", "cache"},
    "stages": {"stages", "pipeline", "cache"},
}
#: The layers inside umt.pipeline, lowest first, by module path (the longest prefix names a
#: module's layer): a module imports modules of its own layer and of lower ones only.
PIPELINE_LAYERS = (
    (
        "contracts",
        (
            "errors", "files", "typed_fields", "labels", "metrics", "batch", "train_config",
            "models.config", "data.types", "text.tweets", "settings", "wording", "packing",
        ),
    ),
    ("run files", ("run_dir", "sharing.source")),
    ("runtime", ("runtime",)),
    ("building blocks", ("data", "text", "vision", "heads", "modules")),
    ("models", ("models",)),
    ("inference", ("inference",)),
    ("sharing", ("sharing",)),
    ("training", ("training",)),
    ("tracking", ("tracking",)),
    ("report", ("report",)),
    ("sweep", ("sweep",)),
    ("serving", ("serving",)),
)  # fmt: skip


def _module_name(path: Path) -> str:
    """``umt.pipeline.data.batching`` for pipeline/data/batching.py (a package is its folder)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["umt", *parts])


def _modules() -> dict[str, Path]:
    paths = [ROOT / "__init__.py", ROOT / "cli.py", ROOT / "experiment_file.py"]
    for layer in ALLOWED:
        paths += sorted((ROOT / layer).rglob("*.py"))
    return {_module_name(path): path for path in paths}


def _under_type_checking(tree) -> set[int]:
    """The ids of the import nodes inside ``if TYPE_CHECKING:`` blocks (annotations only: they never run)."""
    import ast

    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            skipped |= {id(inner) for inner in ast.walk(node)}
    return skipped


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The umt modules ``path`` imports anywhere in it (inside functions too), but for annotations."""
    import ast

    tree = ast.parse(path.read_text())
    skipped = _under_type_checking(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("umt.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("umt"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return {name for name in found if name in modules}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: its strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _pipeline_layer(module: str) -> int | None:
    """The rank in :data:`PIPELINE_LAYERS` of a ``umt.pipeline.*`` module (None for others)."""
    if not module.startswith("umt.pipeline."):
        return None
    name = module.removeprefix("umt.pipeline.")
    best = None
    for rank, (_, prefixes) in enumerate(PIPELINE_LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    assert best is not None, f"{module} is in no layer of PIPELINE_LAYERS: add it"
    return best[0]


def test_imports_flow_one_way():
    wrong = []
    for name, imported in _graph().items():
        layer = name.split(".")[1] if "." in name else "umt"
        if layer not in ALLOWED:
            continue
        for target in imported:
            if target.split(".")[1] not in ALLOWED[layer]:
                wrong.append(f"{name} imports {target}")
    assert wrong == []
    assert {t.split(".")[1] for t in _graph()["umt.cli"]} <= {"stages", "pipeline", "cache", "experiment_file"}
    assert {t.split(".")[1] for t in _graph()["umt.experiment_file"]} <= {"pipeline"}  # the CLI's, beside it


def test_inside_the_pipeline_imports_flow_down_the_layers():
    names = [name for name, _ in PIPELINE_LAYERS]
    wrong = []
    for module, imported in sorted(_graph().items()):
        rank = _pipeline_layer(module)
        if rank is None:
            continue
        for target in sorted(imported):
            target_rank = _pipeline_layer(target)
            if target_rank is not None and target_rank > rank:
                wrong.append(f"{module} ({names[rank]}) imports {target} ({names[target_rank]})")
    assert wrong == []


def test_no_module_imports_its_own_importer():
    assert _cycles(_graph()) == []


def test_the_import_checks_see_circles_and_upward_imports():
    """The checks above cannot pass vacuously: a circle and an upward import are found."""
    graph = _graph()
    assert "umt.pipeline.run_dir" in graph["umt.pipeline.training.loop"]  # the graph has real edges
    circled = {**graph, "umt.pipeline.run_dir": graph["umt.pipeline.run_dir"] | {"umt.pipeline.training.loop"}}
    assert any("umt.pipeline.run_dir" in cycle for cycle in _cycles(circled))
    assert _pipeline_layer("umt.pipeline.run_dir") < _pipeline_layer("umt.pipeline.training.loop")
    assert _pipeline_layer("umt.pipeline.models.config") < _pipeline_layer("umt.pipeline.heads.conversion")
