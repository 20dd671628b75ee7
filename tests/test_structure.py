"""The shape the code keeps: short modules and functions, and no module importing one that imports it
back (directly or round a longer circle)."""

import ast

from workflow import REPO

PACKAGE = REPO / "src" / "kpbench"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 300, 60
# A longer function says why in a comment on the lines right above its `def`, starting "Long:".
REASON = "# Long:"


def _modules():
    return {path.stem: path for path in sorted(PACKAGE.glob("*.py"))}


def test_every_module_is_short():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


def test_every_function_is_short_or_says_why():
    long = []
    for name, path in _modules().items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                above = lines[max(0, first - 4):first - 1]
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES and not any(
                        line.strip().startswith(REASON) for line in above):
                    long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long, long


def _imports(path):
    """kpbench modules `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kpbench"):
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("kpbench.")}
    return found


def test_no_module_imports_one_that_imports_it_back():
    modules = _modules()
    graph = {name: _imports(path) & set(modules) - {name} for name, path in modules.items()}
    circles = []

    def visit(name, trail):
        for other in sorted(graph[name]):
            if other in trail:
                circles.append(" → ".join(trail[trail.index(other):] + [other]))
            elif other not in done:
                visit(other, trail + [other])
        done.add(name)

    done = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert not circles, sorted(set(circles))
