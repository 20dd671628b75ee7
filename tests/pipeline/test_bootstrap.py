"""bootstrap.sh's decisions on the machines newcomers have, played with a PATH of stubs.

The PATH holds only the stubs of one test's machine (interpreters, apt-get, sudo, id, df, TeX and
poppler commands) and symlinks to the few real text and file tools the script uses, so nothing of
this machine decides. Every stub records its call; a stub interpreter refuses `-m venv`, so a run
that gets that far stops there and installs nothing.
"""
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

# Runs Snakemake, whole pipelines or real clusters: left out of the fast loop (`-m "not workflow"`).
pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[2]
BASH = shutil.which("bash")
TOOLS = ["bash", "env", "dirname", "cat", "sha256sum", "cut", "sed", "grep", "sort"]
COMMANDS = ["latexmk", "pdflatex", "kpsewhich", "pdfinfo", "pdftotext", "git"]
STYS = ["geometry.sty", "graphicx.sty", "amsmath.sty", "hyperref.sty", "booktabs.sty", "siunitx.sty"]
GB = 1024 * 1024  # df -Pk counts KiB


class Machine:
    """A complete Debian-like machine by default: root, apt-get, TeX, poppler, git, python3 3.11."""

    def __init__(self, root):
        self.repo = root / "repo"
        self.repo.mkdir()
        for name in ["bootstrap.sh", "pyproject.toml"]:
            shutil.copy(REPO / name, self.repo / name)
        self.stubs = root / "stubs"
        self.stubs.mkdir()
        tools = root / "tools"
        tools.mkdir()
        for tool in TOOLS:
            (tools / tool).symlink_to(shutil.which(tool))
        self.path = f"{self.stubs}:{tools}"
        self.log = root / "calls.log"
        self.log.touch()
        self.home = root / "home"
        self.home.mkdir()
        self.uid(0)
        self.free(100 * GB)
        self.apt_get()
        for command in COMMANDS:
            if command != "kpsewhich":
                self.stub(command, "")
        self.stys(STYS)
        self.python("python3", "3.11")

    def stub(self, name, body):
        path = self.stubs / name
        path.write_text(f'#!{BASH}\necho "{name} $*" >> {self.log}\n{body}\n')
        path.chmod(0o755)

    def remove(self, *names):
        for name in names:
            (self.stubs / name).unlink()

    def python(self, name, version, venv=True):
        self.stub(name, f"""case "$1 $2" in
    "-c "*version_info*) echo {version} ;;
    "-c "*ensurepip*) exit {0 if venv else 1} ;;
    *) echo "stub {name}: not installing" >&2; exit 1 ;;
esac""")

    def pyenv_shim(self, name):
        """A pyenv shim for a version that is installed but not selected: it fails."""
        self.stub(name, f'echo "pyenv: {name}: command not found" >&2; exit 127')

    def stys(self, present):
        cases = "|".join(present) or "none"
        self.stub("kpsewhich", f'case "$1" in {cases}) echo "/tex/$1" ;; *) exit 1 ;; esac')

    def uid(self, uid):
        self.stub("id", f'[ "$1" = -u ] && echo {uid}')

    def free(self, kib):
        self.stub("df", "echo 'Filesystem 1024-blocks Used Available Capacity Mounted on'\n"
                        f"echo '/dev/vda 999999999 0 {kib} 1% /'")

    def apt_get(self):
        path = self.stubs / "apt-get"
        path.write_text(f'#!{BASH}\necho "${{DEBIAN_FRONTEND:+DEBIAN_FRONTEND=$DEBIAN_FRONTEND }}apt-get $*" '
                        f">> {self.log}\n")
        path.chmod(0o755)

    def sudo(self):
        self.stub("sudo", 'exec "$@"')

    def run(self, target="test"):
        env = {"PATH": self.path, "HOME": str(self.home)}
        result = subprocess.run([BASH, str(self.repo / "bootstrap.sh"), target], env=env,
                                capture_output=True, text=True, timeout=60)
        result.calls = self.log.read_text().splitlines()
        return result


@pytest.fixture
def machine(tmp_path):
    return Machine(tmp_path)


def installs(calls):
    return [c for c in calls if c.startswith(("sudo", "apt-get", "DEBIAN_FRONTEND")) or " -m " in c]


def apt_install(calls):
    line, = [c for c in calls if "apt-get install" in c]
    return line.split("--no-install-recommends ")[1].split()


def test_python3_in_the_supported_range_is_used(machine):
    machine.python("python3.13", "3.13")
    result = machine.run()
    assert "bootstrap: Python 3.11 (python3)" in result.stdout
    assert installs(result.calls) == ["python3 -m venv .venv"]


def test_a_too_new_python3_gives_way_to_the_newest_supported_one(machine):
    machine.python("python3", "3.14")
    machine.pyenv_shim("python3.13")
    for version in ["3.12", "3.11", "3.10"]:
        machine.python(f"python{version}", version)
    result = machine.run()
    assert "bootstrap: Python 3.12 (python3.12)" in result.stdout
    assert installs(result.calls) == ["python3.12 -m venv .venv"]


@pytest.mark.parametrize("pythons, found", [
    ({"python3": "3.10", "python3.14": "3.14"}, "Found only: python3 is 3.10; python3.14 is 3.14."),
    ({}, "Found no Python on the PATH."),
], ids=["3.10-and-3.14", "none"])
def test_without_a_supported_python_it_stops_before_installing(machine, pythons, found):
    machine.remove("python3", "latexmk")  # as root with apt-get, it would install TeX next
    for name, version in pythons.items():
        machine.python(name, version)
    result = machine.run()
    assert result.returncode == 1
    assert ("bootstrap: kpbench needs Python >=3.11,<3.14 (pyproject.toml's requires-python); "
            "nothing was installed.") in result.stderr
    assert found in result.stderr
    for way in ["apt-get install python3.11 python3.11-venv (Ubuntu 22.04)", "dnf install python3.13",
                "brew install python@3.13", "pyenv install 3.13 && pyenv local 3.13",
                "conda env create -f environment.yml && conda activate kpbench"]:
        assert way in result.stderr
    assert installs(result.calls) == []
    assert not any(c.startswith("df") for c in result.calls)


def test_the_supported_range_is_read_from_pyproject(machine):
    pyproject = machine.repo / "pyproject.toml"
    text = pyproject.read_text()
    assert 'requires-python = ">=3.11,<3.14"' in text
    pyproject.write_text(text.replace('">=3.11,<3.14"', '">=3.12,<3.13"'))
    machine.python("python3.13", "3.13")
    machine.python("python3.12", "3.12")
    result = machine.run()
    assert "bootstrap: Python 3.12 (python3.12)" in result.stdout

    machine.remove("python3.12")
    result = machine.run()
    assert "kpbench needs Python >=3.12,<3.13" in result.stderr
    assert "Found only: python3 is 3.11; python3.13 is 3.13." in result.stderr


def test_a_requires_python_without_an_upper_bound_is_refused(machine):
    pyproject = machine.repo / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('">=3.11,<3.14"', '">=3.11"'))
    result = machine.run()
    assert result.returncode == 2
    assert 'pyproject.toml must give requires-python as ">=X.Y,<X.Y"' in result.stderr
    assert installs(result.calls) == []


def test_as_root_with_apt_get_it_installs_what_is_missing(machine):
    """The CI machine's path: Debian as root, TeX missing."""
    machine.remove("latexmk", "pdflatex", "kpsewhich")
    machine.python("python3", "3.11", venv=False)
    result = machine.run()
    assert "bootstrap: installing system packages:" in result.stdout
    assert installs(result.calls)[0] == "apt-get update -qq"
    assert installs(result.calls)[1].startswith("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ")
    assert apt_install(result.calls) == ["latexmk", "texlive-latex-base", "texlive-binaries",
                                         "texlive-latex-recommended", "texlive-science", "python3-venv"]
    assert installs(result.calls)[2:] == ["python3 -m venv .venv"]
    assert result.calls.index("df -Pk .") < result.calls.index("apt-get update -qq")


def test_with_sudo_it_installs_through_sudo(machine):
    machine.uid(1000)
    machine.sudo()
    machine.stys([s for s in STYS if s != "siunitx.sty"])
    result = machine.run()
    assert installs(result.calls) == [
        "sudo apt-get update -qq",
        "apt-get update -qq",
        "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends texlive-science",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends texlive-science",
        "python3 -m venv .venv",
    ]


def no_sudo(machine):
    machine.uid(1000)


def no_apt_get(machine):
    machine.remove("apt-get")


@pytest.mark.parametrize("situation, reason", [(no_sudo, "not root and there is no sudo"),
                                               (no_apt_get, "there is no apt-get")],
                         ids=["no-sudo", "no-apt-get"])
def test_when_it_cannot_install_it_lists_what_is_missing_and_stops(machine, situation, reason):
    situation(machine)
    machine.remove("pdfinfo", "pdftotext")
    machine.stys([s for s in STYS if s not in ("booktabs.sty", "siunitx.sty")])
    machine.python("python3", "3.11", venv=False)  # Debian's venv is a package of its own
    result = machine.run()
    assert result.returncode == 1
    assert f"bootstrap: cannot install system packages ({reason}); nothing was installed." in result.stderr
    rows = {line.split()[1]: line.split()[0] for line in result.stderr.splitlines()
            if line.strip().startswith(("present", "MISSING"))}
    assert rows == {"latexmk": "present", "pdflatex": "present", "kpsewhich": "present",
                    "geometry.sty": "present", "graphicx.sty": "present", "amsmath.sty": "present",
                    "hyperref.sty": "present", "booktabs.sty": "MISSING", "siunitx.sty": "MISSING",
                    "pdfinfo": "MISSING", "pdftotext": "MISSING", "git": "present", "venv": "MISSING"}
    assert ("apt (as root): apt-get install --no-install-recommends texlive-latex-recommended "
            "texlive-science poppler-utils python3-venv\n") in result.stderr
    assert "dnf (as root): dnf install texlive-booktabs texlive-siunitx poppler-utils\n" in result.stderr
    assert "Homebrew:      brew install texlive poppler\n" in result.stderr
    assert installs(result.calls) == []


@pytest.mark.parametrize("situation", [no_sudo, no_apt_get], ids=["no-sudo", "no-apt-get"])
def test_when_it_cannot_install_it_goes_on_if_everything_is_present(machine, situation):
    situation(machine)
    result = machine.run()
    assert "cannot install" not in result.stderr
    assert installs(result.calls) == ["python3 -m venv .venv"]


def test_too_little_free_space_stops_before_installing(machine):
    machine.remove("latexmk")
    machine.free(int(1.5 * GB))
    result = machine.run()
    assert result.returncode == 1
    assert ("bootstrap: installing needs about 5 GB free (TensorFlow, TeX and the data); "
            f"{machine.repo} has 1.5 GB free. Nothing was installed.") in result.stderr
    assert installs(result.calls) == []


def test_a_second_run_installs_nothing_until_pyproject_changes(machine):
    bin_dir = machine.repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "activate").write_text(f'PATH="{bin_dir}:$PATH"\n')
    for tool in ("python", "snakemake", "snakefmt", "ruff"):  # the venv's: each notes its call
        (bin_dir / tool).write_text(f'#!{BASH}\necho "venv-{tool} $*" >> {machine.log}\n')
        (bin_dir / tool).chmod(0o755)
    pyproject = machine.repo / "pyproject.toml"
    (machine.repo / ".venv" / ".kpbench-installed").write_text(
        hashlib.sha256(pyproject.read_bytes()).hexdigest() + "\n")
    result = machine.run()
    assert result.returncode == 0, result.stderr
    # The code's shape is checked before the tests: the workflow lint, snakefmt, ruff.
    assert result.calls[-4:] == ["venv-snakemake --lint", "venv-snakefmt --check Snakefile rules/",
                                 "venv-ruff check src tests bench rules/scripts", "venv-python -m pytest"]
    assert installs(result.calls) == ["venv-python -m pytest"]  # no apt-get, no new venv
    assert not any(c.startswith("df") for c in result.calls)

    pyproject.write_text(pyproject.read_text() + "\n")
    result = machine.run()
    assert "python3 -m venv .venv" in installs(result.calls)
