import os
import shutil

import pytest

from workflow import checkout, snakemake

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Tests over a built tree (the tiny pipeline run by Snakemake) or that train on played EC2 instances
# (the `player` fixture) are workflow tests: the fast loop leaves them out.
WORKFLOW_FIXTURES = {"tree", "finished", "foreign_tree", "player"}


def pytest_collection_modifyitems(items):
    for item in items:
        if WORKFLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.workflow)


@pytest.fixture(scope="session")
def tree(tmp_path_factory):
    """A user's checkout (see `checkout`) with its paper built.

    The cluster's compute-only estimate is inflated past its step time, as a stall while it was taken
    would: an honest measurement the analysis must carry to the PDF rather than fail on."""
    root = checkout(tmp_path_factory.mktemp("tree"))
    result = snakemake(root, "--cores", "2", "paper", "--configfile", "tiny.yaml",
                       env={"KPBENCH_INJECT_COMPUTE_SCALE": "50"})
    (root / "terminal.txt").write_text(result.stderr)  # what a person running Snakemake saw
    return root


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory):
    """A small synthetic data set in Kaggle's files, made once per test session."""
    from kpbench.data.synthetic import write_synthetic_csvs

    folder = tmp_path_factory.mktemp("raw")
    write_synthetic_csvs(folder, n_train=60, n_test=6, seed=11)
    return folder


@pytest.fixture
def raw_copy(raw_dir, tmp_path):
    """A private copy of the raw files that a test may corrupt."""
    folder = tmp_path / "raw"
    shutil.copytree(raw_dir, folder)
    return folder


@pytest.fixture(scope="session")
def dataset(raw_dir, tmp_path_factory):
    from kpbench.data.preprocess import preprocess

    out = tmp_path_factory.mktemp("processed")
    preprocess(raw_dir, out / "dataset.npz", out / "stats.json", out / "samples.npz",
               validation_fraction=0.2, seed=3)
    return out


@pytest.fixture(scope="session")
def small_dataset():
    """Makes synthetic Kaggle files of `n_train` rows in a folder and preprocesses them."""
    from kpbench.data.preprocess import preprocess
    from kpbench.data.synthetic import write_synthetic_csvs

    def make(folder, n_train, seed, validation_fraction):
        write_synthetic_csvs(folder, n_train=n_train, n_test=2, seed=seed)
        preprocess(folder, folder / "dataset.npz", folder / "stats.json", folder / "samples.npz",
                   validation_fraction, 0)
        return folder / "dataset.npz"

    return make
