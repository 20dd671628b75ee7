"""Benchmark 5: pipeline overhead on a finished tree.

Times `snakemake -n paper` (planning only) and a rebuild of the paper from stored results (figures,
LaTeX sources and the PDF, forced), median of repeats. Run it in a tree whose `paper` target is
already built, e.g. after `bash bootstrap.sh paper`, with the overlay it was built with: a tree that
would plan anything else first (training, say) is refused, so each time is of what it names.

    python bench/pipeline.py                 # the repository's own tree
    python bench/pipeline.py --tree /some/finished/tree --repeats 1 --configfile tiny.yaml
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, median_seconds  # noqa: E402

# What a rebuild from stored results runs; anything else planned means the tree is not finished.
REBUILD_JOBS = {"render_figures", "render_tex", "compile_pdf", "paper"}


def planned_rules(dry_run):
    """The rules a dry run's 'Job stats' table lists (none when there is nothing to be done)."""
    if "Job stats:" not in dry_run:
        return set()
    table = dry_run.split("Job stats:", 1)[1].split("total", 1)[0].splitlines()[3:]
    return {line.split()[0] for line in table if line.strip()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configfile", help="a config overlay the tree was built with")
    args = parser.parse_args()
    if not (args.tree / "paper" / "build" / "paper.pdf").is_file():
        sys.exit(f"{args.tree}: no finished paper; build it first (snakemake --cores 1 paper)")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    extra = ["--configfile", args.configfile] if args.configfile else []

    def snakemake(*words):
        return subprocess.run([sys.executable, "-m", "snakemake", *words, *extra], cwd=args.tree, env=env,
                              check=True, capture_output=True, text=True).stdout

    rebuild_words = ("--cores", "1", "paper", "--forcerun", "render_figures", "render_tex")
    for words, allowed in ((("--cores", "1", "paper"), set()), (rebuild_words, REBUILD_JOBS)):
        planned = planned_rules(snakemake("-n", *words))
        if not planned <= allowed:
            sys.exit(f"{args.tree}: `snakemake {' '.join(words)}` would also run {', '.join(sorted(planned - allowed))}: "
                     "not a finished tree under this configuration (pass the --configfile it was built with)")
    plan, plan_all, _ = median_seconds(lambda: snakemake("-n", "--cores", "1", "paper"), args.repeats)
    rebuild, rebuild_all, _ = median_seconds(
        lambda: snakemake(*rebuild_words), args.repeats)
    print(f"machine: {machine_line()}")
    print(f"snakemake -n paper (finished tree):       median {plan:.2f} s  runs {[round(t, 2) for t in plan_all]}")
    print(f"rebuild figures + LaTeX + PDF from results: median {rebuild:.2f} s  runs {[round(t, 2) for t in rebuild_all]}")


if __name__ == "__main__":
    main()
