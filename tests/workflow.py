"""Running the real Snakefile from tests: a user's command line, in a given working tree."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def checkout(root):
    """A user's checkout in `root`: the workflow files only, no data, no results; the tiny test overlay."""
    for name in ("Snakefile", "rules", "config", "environment.yml"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, root / name)
    shutil.copytree(REPO / "paper", root / "paper", ignore=shutil.ignore_patterns("build"))
    copy_setup(root)
    shutil.copy(REPO / "tests" / "fixtures" / "tiny.yaml", root / "tiny.yaml")
    return root


def copy_setup(root):
    """The measured set-up every rental is priced with (the predict and plan rules read it)."""
    (root / "bench" / "measured").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "bench" / "measured" / "setup.json", root / "bench" / "measured")


def snakemake(tree, *args, check=True, env=None):
    env = {**os.environ, **(env or {}), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=tree, env=env,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def planned_jobs(output):
    """The 'Job stats' table of a dry run, as {rule: count}; empty when there is nothing to be done."""
    if "Job stats:" not in output:
        assert "Nothing to be done" in output, output[-2000:]
        return {}
    table = output.split("Job stats:", 1)[1].split("total", 1)[0].splitlines()[3:]
    return {line.split()[0]: int(line.split()[1]) for line in table if line.strip()}
