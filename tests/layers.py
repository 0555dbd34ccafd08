"""The layer rules that import-linter's contracts (in pyproject.toml) cannot say.

- Rules are pure: a `rules` module (and the few other pure modules named below)
  imports only side-effect-free parts of the standard library and other pure modules.
- A capability's services use another capability only through that capability's
  services and rules, never through its adapters (tables, files, sockets, web).
- No two modules import each other, directly or round a loop.

Run as a script (`python -m tests.layers`) it prints every problem and exits 1 if
there is one; the suite runs it on the source tree and on a copy with a deliberate
violation (tests/test_layers.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import grimp

CAPABILITIES = (
    "accounts",
    "audit",
    "network",
    "certificates",
    "backups",
    "updates",
    "installs",
    "jump_clients",
    "jumpoints",
    "sessions",
    "failover",
    "appliance",
)
EXTRA_PURE = (
    "bastion.platform.principals",
    "bastion.releases.versions",
    "bastion.supervisor.journal",
    "bastion.update_service.rollout",
)
EXTRA_SERVICES = (
    "bastion.accounts.sign_in",
    "bastion.accounts.api_clients",
    "bastion.backups.schedule",
    "bastion.installs.schedule",
    "bastion.certificates.site",
    "bastion.updates.channel",
    "bastion.jump_clients.upgrades",
)
PURE_STDLIB = frozenset(
    {
        "__future__",
        "abc",
        "base64",
        "binascii",
        "collections",
        "dataclasses",
        "datetime",
        "decimal",
        "enum",
        "fractions",
        "functools",
        "hashlib",
        "hmac",
        "ipaddress",
        "itertools",
        "json",
        "math",
        "operator",
        "re",
        "string",
        "typing",
        "unicodedata",
    }
)


def is_pure(module: str) -> bool:
    return module.endswith(".rules") or module in EXTRA_PURE


def is_service(module: str) -> bool:
    """A capability's public face to the others: its services and its error family."""
    return module.endswith((".service", ".errors")) or module in EXTRA_SERVICES


def capability_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in CAPABILITIES else None


def impure_imports(graph: grimp.ImportGraph) -> list[str]:
    problems = []
    for module in sorted(m for m in graph.modules if is_pure(m)):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported.split(".")[0] in PURE_STDLIB or is_pure(imported):
                continue
            problems.append(f"{module} (pure rules) imports {imported}")
    return problems


def foreign_adapters(graph: grimp.ImportGraph) -> list[str]:
    problems = []
    for module in sorted(m for m in graph.modules if is_service(m) and capability_of(m)):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            other = capability_of(imported)
            if other in (None, capability_of(module)):
                continue
            if not (is_service(imported) or is_pure(imported)):
                problems.append(f"{module} (a service) imports {imported}, an adapter of {other}")
    return problems


def cycles(graph: grimp.ImportGraph) -> list[str]:
    """Every group of modules that import each other round a loop (Tarjan's algorithm)."""
    internal = sorted(m for m in graph.modules if m.startswith("bastion"))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[str] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in _internal(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = [stack.pop()]
            while group[-1] != module:
                group.append(stack.pop())
            on_stack.difference_update(group)
            if len(group) > 1:
                found.append("import cycle: " + " <-> ".join(sorted(group)))

    for module in internal:
        if module not in index:
            visit(module)
    return found


def _internal(modules: Iterable[str]) -> list[str]:
    return sorted(m for m in modules if m.startswith("bastion"))


def problems() -> list[str]:
    graph = grimp.build_graph("bastion", include_external_packages=True)
    return [*impure_imports(graph), *foreign_adapters(graph), *cycles(graph)]


def main() -> int:
    found = problems()
    for problem in found:
        print(problem)
    return 1 if found else 0


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    sys.exit(main())
