"""The layout's promises, read from the imports themselves: who may build on whom.

``plumbing`` is the machinery every process shares, so it knows nothing of ours; the producer never builds on
the consumers (but for the totals its in-process tracker shares with the stats service); the consumers never
build on the producer. A new import that breaks one of these fails here, naming the file and the module.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = ("bench", "consumers", "plumbing", "producer", "schemas", "tests")

Imports = set[tuple[str, str]]
"""(file relative to the root, module it imports)."""


def imported_modules(source: str, module: str) -> set[str]:
    """Every module ``source`` (the module named ``module``) imports, anywhere in it, relative imports resolved."""
    found: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def imports_of(package: str) -> Imports:
    pairs: Imports = set()
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT)
        module = ".".join(relative.with_suffix("").parts)
        pairs.update((relative.as_posix(), name) for name in imported_modules(path.read_text(), module))
    return pairs


def top(module: str) -> str:
    return module.split(".", 1)[0]


def test_relative_imports_are_resolved_to_their_package() -> None:
    found = imported_modules("from .errors import ConfigError\nfrom . import text\n", "plumbing.options")
    assert {"plumbing.errors", "plumbing.text"} <= found


def test_plumbing_imports_nothing_of_ours() -> None:
    offending = sorted((f, m) for f, m in imports_of("plumbing") if top(m) in OURS and top(m) != "plumbing")
    assert offending == []


def test_the_producer_imports_from_the_consumers_only_the_totals_for_its_tracker() -> None:
    def allowed(file: str, module: str) -> bool:
        return file == "producer/tracker.py" and (
            module == "consumers.totals" or module.startswith("consumers.totals.")
        )

    offending = sorted((f, m) for f, m in imports_of("producer") if top(m) == "consumers" and not allowed(f, m))
    assert offending == []


def test_the_consumers_never_import_the_producer() -> None:
    offending = sorted((f, m) for f, m in imports_of("consumers") if top(m) == "producer")
    assert offending == []
