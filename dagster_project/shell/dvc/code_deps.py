"""The package's own import graph, read from the source (`ast`, imports inside functions
included): which files a module runs, for the DVC stages' code deps, and whether any import
circle exists.

No module is imported to find this out, so it sees lazy imports that only run inside an asset.
A module that names another as a string (`"dagster_project.cli.worker"`, the module the
training asset launches with `python -m`) runs it too: `reachable` follows those launches,
`cycles` (imports only) does not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[2]  # dagster_project/


class ImportGraph:
    """The modules of one package (`root`: its folder) and what each imports of it."""

    def __init__(self, root: Path = PACKAGE_DIR) -> None:
        self.root = root
        self.package = root.name
        self.files: dict[str, Path] = {}
        for file in sorted(root.rglob("*.py")):
            parts = file.relative_to(root.parent).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            self.files[name] = file
        self.imports: dict[str, set[str]] = {}
        self.launches: dict[str, set[str]] = {}
        for name in self.files:
            self.imports[name], self.launches[name] = self._read(name)

    def _module(self, name: str) -> str | None:
        """The package module that defines `name` (a module, or a name inside one)."""
        while name and name not in self.files:
            name = name.rpartition(".")[0]
        return name or None

    def _read(self, name: str) -> tuple[set[str], set[str]]:
        """What module `name` imports of the package, and the package modules it names as
        strings (to run them)."""
        file = self.files[name]
        here = name if file.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        named: set[str] = set()
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
            if isinstance(node, ast.Constant) and node.value in self.files:
                named.add(node.value)
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from a parent package
                    up = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                if target.split(".")[0] == self.package and (module := self._module(target)):
                    found.add(module)
        found.discard(name)
        named.discard(name)
        return found, named

    def _packages(self, name: str) -> list[str]:
        """The packages whose `__init__` runs before `name` does."""
        parts = name.split(".")
        return [".".join(parts[:i]) for i in range(1, len(parts))]

    def reachable(self, modules: Iterable[str]) -> set[str]:
        """`modules` and everything they import or launch from the package, transitively (the
        packages around each included: their `__init__` runs first)."""
        seen: set[str] = set()
        todo = list(modules)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo += [*self.imports[name], *self.launches[name], *self._packages(name)]
        return seen

    def paths(self, modules: set[str], base: Path) -> list[str]:
        """The files of `modules`, relative to `base`: a folder where every module under it is
        included (a stage lists `dagster_project/models`, not its dozen files)."""
        chosen = {self.files[name] for name in modules}

        def visit(folder: Path) -> tuple[bool, list[str]]:
            """Whether all of `folder` is chosen, and what to list of it otherwise."""
            whole, listed = True, []
            for child in sorted(folder.iterdir()):
                if child.is_dir() and (child / "__init__.py").is_file():
                    child_whole, child_listed = visit(child)
                    whole &= child_whole
                    listed += [child.relative_to(base).as_posix()] if child_whole else child_listed
                elif child.suffix == ".py":
                    if child not in chosen:
                        whole = False
                    elif child.stat().st_size:  # an empty __init__ runs nothing
                        listed.append(child.relative_to(base).as_posix())
            return whole, listed

        whole, listed = visit(self.root)
        return [self.root.relative_to(base).as_posix()] if whole else sorted(listed)

    def cycles(self) -> list[list[str]]:
        """Every import circle (strongly connected set of modules), biggest first."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        found: list[list[str]] = []

        def visit(name: str) -> None:  # Tarjan's algorithm
            index[name] = low[name] = len(index)
            stack.append(name)
            on_stack.add(name)
            for other in self.imports[name]:
                if other not in index:
                    visit(other)
                    low[name] = min(low[name], low[other])
                elif other in on_stack:
                    low[name] = min(low[name], index[other])
            if low[name] == index[name]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == name:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

        for name in sorted(self.files):
            if name not in index:
                visit(name)
        return sorted(found, key=len, reverse=True)
