"""What setting a machine up takes, for the rental model (kpbench.forecast.rental): the bytes of the
Python packages an EC2 run installs (pyproject.toml's dependencies, as `pip download` fetches them
for this Python and platform) and the seconds `pip install` takes from those files into a fresh
venv, median of --repeats. Writes bench/measured/setup.json.

    python bench/setup.py --repeats 3
"""

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from common import machine_line, median_seconds

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "measured" / "setup.json")
    args = parser.parse_args()
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    with tempfile.TemporaryDirectory() as scratch:
        wheels = Path(scratch) / "wheels"
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(wheels), *dependencies],
                       check=True)
        package_bytes = sum(f.stat().st_size for f in wheels.iterdir())

        def install():
            venv = Path(tempfile.mkdtemp(dir=scratch))
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index",
                            "--find-links", str(wheels), *dependencies], check=True)

        median, times, _ = median_seconds(install, args.repeats)
    result = {"package_bytes": package_bytes, "install_s": median, "install_s_runs": times,
              "date": datetime.date.today().isoformat(),
              "what": (f"pip install of pyproject.toml's dependencies ({package_bytes / 1e6:,.0f} MB of "
                       f"{len(dependencies)} requirements and theirs) into a fresh venv, median of "
                       f"{args.repeats}, on {machine_line()}")}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
