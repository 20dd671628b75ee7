import ast
from pathlib import Path

import kpbench

PACKAGE = Path(kpbench.__file__).parent


def _imports(path):
    """The kpbench modules a module imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        found |= {name.split(".")[1] for name in names if name.startswith("kpbench.")}
    return found


def test_no_module_imports_a_module_that_imports_it_back():
    graph = {path.stem: _imports(path) for path in PACKAGE.glob("*.py")}
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            module = todo.pop()
            assert module != start, f"kpbench.{start} imports a module that imports it back"
            if module not in seen:
                seen.add(module)
                todo.extend(graph.get(module, ()))
