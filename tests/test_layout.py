"""The layout tells the truth: imports only go downward through the layers, only the gallery writes the ledger, every
use case has a module named after it, no source file is too long to read, and the docs list every audit action."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from faceledger.ledger.actions import AuditAction

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "faceledger"

# What each part may import from faceledger (besides itself). Base modules import nothing of the layers
# (``__version__`` is the package's version string).
BASE = {"errors", "config", "wire", "__version__"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": {"errors"},
    "wire": set(),
    "examples": set(),
    "imageio": BASE | {"imageconvert"},
    "imageconvert": BASE,
    "vision": BASE | {"imageio"},
    "models": BASE | {"imageio", "vision"},
    "engine": BASE | {"imageio", "vision", "models"},
    "evaluate": BASE | {"imageio", "vision", "models", "engine", "examples"},
    "ledger": BASE,  # the system of record knows nothing of images or models
    "gallery": BASE | {"imageio", "vision", "models", "engine", "ledger", "examples"},
    "interfaces": BASE | {"imageio", "vision", "models", "engine", "ledger", "gallery", "evaluate", "examples"},
}


def _part(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """The faceledger parts a module imports (``faceledger.X...`` and ``from faceledger import X`` → ``X``; the
    package itself, which imports every layer, → ``<root>``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "faceledger":
            names = [f"faceledger.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "faceledger":
                found.add(parts[1] if len(parts) > 1 else "<root>")
    return found


SOURCES = sorted(p for p in SRC.rglob("*.py") if p.parent != SRC or p.name != "__init__.py")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_only_go_downward(path: Path) -> None:
    part = _part(path)
    assert part in ALLOWED, f"{path}: part {part!r} has no place in the layers; add it to the architecture"
    upward = _imports(path) - ALLOWED[part] - {part}
    assert not upward, f"{path.relative_to(SRC)} ({part}) imports {sorted(upward)}, which are not below it"


def test_only_the_gallery_writes_the_ledger() -> None:
    writers = re.compile(r"\bappend_audit\b|\bAuditDraft\b|\bopen_store\b|\bSQLiteStore\b|\.write\(\)")
    offenders = [
        str(p.relative_to(SRC))
        for p in SOURCES
        if _part(p) not in ("gallery", "ledger") and writers.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_each_use_case_has_its_module() -> None:
    gallery = {p.stem for p in (SRC / "gallery").glob("*.py")}
    for use_case in ("consent", "enrollment", "identification", "review", "erasure", "retention", "keys", "admin"):
        assert use_case in gallery, f"no gallery/{use_case}.py"


def test_no_source_file_is_over_600_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in SOURCES if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert long == {}


def test_audit_actions_are_the_enumeration_and_the_docs_list_them_all() -> None:
    literal = re.compile(r"action\s*=\s*[\"'f]")
    for path in (SRC / "gallery").glob("*.py"):
        assert not literal.search(path.read_text(encoding="utf-8")), f"{path.name}: audit action as a string literal"
    docs = (ROOT / "docs" / "gallery.md").read_text(encoding="utf-8")
    missing = [a.value for a in AuditAction if f"| `{a.value}` |" not in docs]
    assert missing == [], f"docs/gallery.md does not list audit actions {missing}"
    for action in AuditAction:
        assert action.describe() and f"| `{action.value}` | {action.describe()} |" in docs
