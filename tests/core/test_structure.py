"""The shape the code keeps: one folder per stage, short modules and functions, and no module
importing one that imports it back (directly or round a longer circle)."""

import ast
import subprocess
import sys

from workflow import REPO

PACKAGE = REPO / "src" / "kpbench"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 300, 60
# A longer function says why in a comment on the lines right above its `def`, starting "Long:".
REASON = "# Long:"
STAGES = {"core", "machine", "data", "model", "train", "backends", "analysis", "forecast", "paper", "cli"}


def _modules():
    """Every module of the package, subpackages included, by dotted name below kpbench."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts) or "__init__"] = path
    return modules


def test_the_walk_sees_every_subpackage():
    """A non-recursive walk would pass every test below vacuously once the code moved into folders."""
    modules = _modules()
    assert {name.split(".")[0] for name in modules if "." in name} == STAGES
    assert len(modules) > 60, sorted(modules)


def test_every_module_sits_in_a_stage_folder():
    loose = [path.name for path in PACKAGE.glob("*.py") if path.stem not in {"__init__", "__main__"}]
    assert not loose, loose
    folders = {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert folders == STAGES, folders ^ STAGES


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


def _imports(path, modules):
    """kpbench modules `path` imports, at the top or inside a function (`from kpbench.a import b`
    names module a.b where that is a module, else a)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "kpbench":
            base = node.module.removeprefix("kpbench").lstrip(".")
            for alias in node.names:
                dotted = f"{base}.{alias.name}" if base else alias.name
                found.add(dotted if dotted in modules else base or "__init__")
        elif isinstance(node, ast.Import):
            found |= {alias.name.removeprefix("kpbench.") for alias in node.names if alias.name.startswith("kpbench.")}
    return found


def test_no_module_imports_one_that_imports_it_back():
    modules = _modules()
    graph = {name: _imports(path, modules) & set(modules) - {name, "__init__"} for name, path in modules.items()}
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


def _imported_by(module):
    """The top-level packages a fresh interpreter holds after importing kpbench.<module>."""
    code = f"import sys, kpbench.{module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    return set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split())


def test_core_imports_neither_tensorflow_nor_a_cloud_client():
    """Settings, layout and the run-file reader serve every stage, the Snakefile included: they must
    load without TensorFlow (seconds) or boto3 (a cloud client the paper has no business with)."""
    core = sorted(name for name in _modules() if name.startswith("core."))
    heavy = {"tensorflow", "tf_keras", "keras", "jax", "boto3", "botocore"}
    assert not {name: found for name in core if (found := _imported_by(name) & heavy)}


def test_the_paper_stage_and_the_backend_registry_import_no_cloud_client():
    """The paper is rebuilt by reviewers with no AWS account; the registry answers the settings and
    the rules (which backends exist, which rent machines) without loading a provider's SDK."""
    for module in ("paper.render", "paper.figures", "backends.registry", "forecast.predict"):
        assert not _imported_by(module) & {"boto3", "botocore"}, module
