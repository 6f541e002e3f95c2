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


def _umt_imports(path: Path) -> set[str]:
    import ast

    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "umt" and len(parts) > 1:
                layers.add(parts[1])
    return layers


def test_imports_flow_one_way():
    wrong = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((ROOT / layer).rglob("*.py")):
            for imported in _umt_imports(path) - allowed:
                wrong.append(f"{path.relative_to(ROOT)} imports umt.{imported}")
    assert wrong == []
    assert _umt_imports(ROOT / "cli.py") <= {"stages", "pipeline", "cache"}
