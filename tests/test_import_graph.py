"""No import cycle among the runtime modules: every import statement of every shipped module
is read (ast, nothing executed), wherever it stands: at the top, in a function, under
TYPE_CHECKING. Only a module's `if __name__ == "__main__":` block is left out: it is the
program's entry point, which no other module imports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import build_layer
from tests.conftest import ROOT


def module_name(path: str) -> str:
    """ "a/b/c.py" -> "a.b.c"; a package's "__init__.py" -> the package."""
    parts = path.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_main_block(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
    )


def imports_of(name: str, source: str, is_package: bool, modules: set[str]) -> set[str]:
    """The runtime modules that `name`'s source imports."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    pending: list[ast.AST] = [ast.parse(source)]
    while pending:
        node = pending.pop()
        if _is_main_block(node):
            continue
        pending.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".") if package else []
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from package import module` imports the module; `from module import name` the
            # module alone.
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {target for target in targets if target in modules and target != name}
    return found


def graph(root: Path, paths: list[str]) -> dict[str, set[str]]:
    modules = {module_name(path): path for path in paths}
    return {
        name: imports_of(
            name,
            (root / path).read_text(encoding="utf-8"),
            path.endswith("__init__.py"),
            set(modules),
        )
        for name, path in modules.items()
    }


def find_cycle(edges: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_the_runtime_has_no_import_cycle() -> None:
    edges = graph(ROOT, build_layer.runtime_modules(ROOT))
    assert "extension" in edges and "parameters_secrets_extension.lambda_api.boot" in edges
    assert "parameters_secrets_extension.lookups" in edges["extension"]  # the walk sees imports
    assert find_cycle(edges) == []


def test_a_cycle_is_found_wherever_its_imports_stand(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "b.py").write_text(
        "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from ..c import X\n"
    )
    (package / "c.py").write_text("def f():\n    from . import a\n")
    (tmp_path / "main.py").write_text('if __name__ == "__main__":\n    from pkg import a\n')
    paths = ["main.py", "pkg/__init__.py", "pkg/a.py", "pkg/c.py"]
    paths += ["pkg/sub/__init__.py", "pkg/sub/b.py"]
    edges = graph(tmp_path, paths)
    assert find_cycle(edges) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    assert edges["main"] == set()  # the entry point's block is not an import of the module
    (package / "c.py").write_text("def f():\n    pass\n")
    assert find_cycle(graph(tmp_path, paths)) == []


def _readme_layout() -> list[list[str]]:
    """The modules of each row of README.md's Layout table, as dotted names, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("| module | concern |")
    rows = []
    for line in readme[start : readme.index("\n\n", start)].splitlines()[2:]:
        first, *more = re.findall(r"`([^`]+)`", line.split("|")[1])
        folder = first.rpartition("/")[0]
        paths = [first, *(f"{folder}/{name}" if folder else name for name in more)]
        rows.append([module_name(path) for path in paths])
    return rows


def test_readme_layout_lists_every_module_in_import_order() -> None:
    paths = build_layer.runtime_modules(ROOT)
    edges = graph(ROOT, paths)
    packages = {module_name(path) for path in paths if path.endswith("/__init__.py")}
    row_of = {name: index for index, row in enumerate(_readme_layout()) for name in row}
    # A row for every runtime module, and only for them (and build_layer.py, which builds).
    assert set(edges) - packages == set(row_of) - {"build_layer"}
    upward = [
        (a, b)
        for a, imports in edges.items()
        for b in imports - packages
        if a not in packages and row_of[b] < row_of[a]
    ]
    assert upward == []  # "dependencies point one way, down this list"
