#!/usr/bin/env bash
# Set up kpbench on a fresh Debian/Ubuntu machine, then build the paper or run the tests.
#   bash bootstrap.sh paper   # → paper/build/paper.pdf
#   bash bootstrap.sh test    # → the test suite
# Idempotent: a second call skips what is already installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

target=${1:-paper}
case "$target" in paper | test) ;; *) echo "usage: bash bootstrap.sh paper|test" >&2; exit 2 ;; esac

APT_PACKAGES=(python3 python3-venv python3-pip git latexmk texlive-latex-base texlive-latex-recommended
              texlive-science poppler-utils)

system_ready() {
    for tool in python3 latexmk pdflatex pdfinfo pdftotext kpsewhich; do
        command -v "$tool" >/dev/null || return 1
    done
    kpsewhich siunitx.sty booktabs.sty hyperref.sty >/dev/null || return 1
    python3 -c "import ensurepip, venv" 2>/dev/null || return 1
}

if ! system_ready; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "bootstrap: installing system packages: ${APT_PACKAGES[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
fi

# Python packages live in .venv; reinstall only when pyproject.toml changes.
stamp=.venv/.kpbench-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "bootstrap: installing Python packages into .venv"
    python3 -m venv .venv
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
    python -m pytest
fi
