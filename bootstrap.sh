#!/usr/bin/env bash
# Set up kpbench, then build the paper or run the tests.
#   bash bootstrap.sh paper   # → paper/build/paper.pdf
#   bash bootstrap.sh test    # → the test suite
# On Debian/Ubuntu as root or with sudo it installs the missing system packages with apt-get;
# elsewhere it lists them and goes on only if they are all present (README.md, "Two commands").
# Idempotent: a second call skips what is already installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

target=${1:-paper}
case "$target" in paper | test) ;; *) echo "usage: bash bootstrap.sh paper|test" >&2; exit 2 ;; esac

# TensorFlow, TeX and the data together: .venv takes about 3 GB, TeX 1 GB, the data 1 GB.
NEEDED_GB=5

# --- A supported Python ------------------------------------------------------------------------
# The supported versions are written once, in pyproject.toml's requires-python, as ">=X.Y,<X.Y":
# TensorFlow publishes wheels for a few Python versions only.
supported_range() {
    local range
    range=$(sed -n 's/^requires-python *= *">= *\([0-9]*\.[0-9]*\) *, *< *\([0-9]*\.[0-9]*\) *".*/\1 \2/p' pyproject.toml)
    if [ -z "$range" ]; then
        echo 'bootstrap: pyproject.toml must give requires-python as ">=X.Y,<X.Y"' >&2
        exit 2
    fi
    echo "$range"
}
range=$(supported_range)
read -r py_min py_below <<<"$range"

# 3.11 → 3011, so that versions compare as integers (10# keeps "3.08" decimal).
version_number() {
    echo $((10#${1%%.*} * 1000 + 10#${1#*.}))
}

supported() {
    [ "$(version_number "$1")" -ge "$(version_number "$py_min")" ] &&
        [ "$(version_number "$1")" -lt "$(version_number "$py_below")" ]
}

# The interpreter's major.minor, or nothing when it does not run (a pyenv shim for a version that is
# installed but not selected is on the PATH and fails).
python_version() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

py=""
rejected=()
# python3 first, then every python3.N on the PATH, newest first.
for candidate in python3 $(compgen -c python3. | grep -E '^python3\.[0-9]+$' | sort -u -t. -k2,2nr); do
    version=$(python_version "$candidate")
    [[ $version =~ ^[0-9]+\.[0-9]+$ ]] || continue
    if supported "$version"; then
        py=$candidate
        break
    fi
    rejected+=("$candidate is $version")
done
if [ -z "$py" ]; then
    newest=${py_below%%.*}.$((10#${py_below#*.} - 1))
    {
        echo "bootstrap: kpbench needs Python >=$py_min,<$py_below (pyproject.toml's requires-python);" \
             "nothing was installed."
        if [ ${#rejected[@]} -gt 0 ]; then
            echo "  Found only: $(printf '%s; ' "${rejected[@]}" | sed 's/; $//')."
        else
            echo "  Found no Python on the PATH."
        fi
        echo "  Get Python $py_min to $newest one of these ways, then run this script again:"
        echo "  - the distribution's package, e.g. apt-get install python$py_min python$py_min-venv (Ubuntu 22.04),"
        echo "    dnf install python$newest (Fedora), brew install python@$newest (macOS)"
        echo "  - pyenv: pyenv install $newest && pyenv local $newest"
        echo "  - conda or mamba: conda env create -f environment.yml && conda activate kpbench"
    } >&2
    exit 1
fi
echo "bootstrap: Python $version ($py)"

# --- System packages ---------------------------------------------------------------------------
# What the pipeline needs from the system, and the package that provides it under apt, dnf and
# Homebrew ("-": part of Python there). A need ending in .sty is a LaTeX package, found with
# kpsewhich; "venv" is the interpreter's venv module (Debian ships it apart); else a command.
SYSTEM_NEEDS=(
    # need        apt                         dnf                Homebrew
    "latexmk      latexmk                     latexmk            texlive"
    "pdflatex     texlive-latex-base          texlive-latex      texlive"
    "kpsewhich    texlive-binaries            texlive-kpathsea   texlive"
    "geometry.sty texlive-latex-base          texlive-geometry   texlive"
    "graphicx.sty texlive-latex-base          texlive-graphics   texlive"
    "amsmath.sty  texlive-latex-base          texlive-amsmath    texlive"
    "hyperref.sty texlive-latex-base          texlive-hyperref   texlive"
    "booktabs.sty texlive-latex-recommended   texlive-booktabs   texlive"
    "siunitx.sty  texlive-science             texlive-siunitx    texlive"
    "pdfinfo      poppler-utils               poppler-utils      poppler"
    "pdftotext    poppler-utils               poppler-utils      poppler"
    "git          git                         git                git"
    "venv         $py-venv                    -                  -"
)

present() {
    case $1 in
        venv) "$py" -c "import ensurepip, venv" 2>/dev/null ;;
        *.sty) kpsewhich "$1" >/dev/null 2>&1 ;;
        *) command -v "$1" >/dev/null ;;
    esac
}

missing=()
for need in "${SYSTEM_NEEDS[@]}"; do
    present "${need%% *}" || missing+=("$need")
done

# The packages that provide the missing needs under one package manager (column 1 apt, 2 dnf,
# 3 Homebrew), each once.
packages_for() {
    local need fields name list=""
    for need in "${missing[@]}"; do
        read -r -a fields <<<"$need"
        name=${fields[$1]}
        [ "$name" != - ] || continue
        case " $list " in *" $name "*) continue ;; esac
        list=${list:+$list }$name
    done
    echo "$list"
}

as_root=""
if [ ${#missing[@]} -gt 0 ]; then
    cannot=""
    if ! command -v apt-get >/dev/null; then
        cannot="there is no apt-get"
    elif [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null; then as_root=sudo; else cannot="not root and there is no sudo"; fi
    fi
    if [ -n "$cannot" ]; then
        {
            echo "bootstrap: cannot install system packages ($cannot); nothing was installed."
            echo "  The pipeline needs:"
            printf '    %-8s %-13s %-26s %-17s %s\n' "" need apt dnf Homebrew
            for need in "${SYSTEM_NEEDS[@]}"; do
                read -r -a fields <<<"$need"
                if present "${fields[0]}"; then state=present; else state=MISSING; fi
                printf '    %-8s %-13s %-26s %-17s %s\n' "$state" "${fields[@]}"
            done
            echo "  Install the missing ones with one of these, then run this script again:"
            echo "    apt (as root): apt-get install --no-install-recommends $(packages_for 1)"
            [ -z "$(packages_for 2)" ] || echo "    dnf (as root): dnf install $(packages_for 2)"
            [ -z "$(packages_for 3)" ] || echo "    Homebrew:      brew install $(packages_for 3)"
        } >&2
        exit 1
    fi
fi

# --- Free space, then install ------------------------------------------------------------------
# Python packages live in .venv; reinstall only when pyproject.toml changes.
stamp=.venv/.kpbench-installed
if command -v sha256sum >/dev/null; then
    wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
else  # macOS
    wanted=$(shasum -a 256 pyproject.toml | cut -d' ' -f1)
fi
install_venv=no
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then install_venv=yes; fi

if [ ${#missing[@]} -gt 0 ] || [ "$install_venv" = yes ]; then
    free_kb=$(df -Pk . | { read -r _; read -r _ _ _ available _; echo "$available"; })
    if [ "$free_kb" -lt $((NEEDED_GB * 1024 * 1024)) ]; then
        echo "bootstrap: installing needs about $NEEDED_GB GB free (TensorFlow, TeX and the data);" \
             "$(pwd) has $((free_kb / 1048576)).$((free_kb % 1048576 * 10 / 1048576)) GB free." \
             "Nothing was installed." >&2
        exit 1
    fi
fi

if [ ${#missing[@]} -gt 0 ]; then
    read -r -a apt_packages <<<"$(packages_for 1)"
    echo "bootstrap: installing system packages: ${apt_packages[*]}"
    $as_root apt-get update -qq
    # env: sudo would drop a variable set in front of it
    $as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi

if [ "$install_venv" = yes ]; then
    echo "bootstrap: installing Python packages into .venv"
    "$py" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[test]"
    echo "$wanted" > "$stamp"
fi

# The rules call `python -m kpbench`: put the venv first on PATH.
# shellcheck disable=SC1091
source .venv/bin/activate

if [ "$target" = paper ]; then
    snakemake --cores 1 paper
    echo "bootstrap: the paper is at paper/build/paper.pdf"
else
    # The code's shape first (seconds): the workflow's lint, its formatting, the Python linter.
    snakemake --lint
    snakefmt --check Snakefile rules/
    ruff check src tests bench rules/scripts
    python -m pytest
fi
