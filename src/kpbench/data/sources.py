"""Where the raw Kaggle files come from: synthetic faces, a Kaggle download or a local copy. Each
source fills a staging folder; only files that pass the readers' checks reach `out_dir`."""

import shutil
import tempfile
import zipfile
from pathlib import Path

from kpbench import KpbenchError
from kpbench.data.csv_reader import DataError, read_kaggle_csv
from kpbench.data.kaggle_client import download_competition
from kpbench.data.kaggle_format import KAGGLE_ROWS, RAW_FILES, TRUTH_FILE
from kpbench.data.synthetic import write_synthetic_csvs


def fetch_raw(data_config, out_dir):
    """Write training.csv, test.csv and IdLookupTable.csv for the configured source into `out_dir`,
    all or nothing; for synthetic faces also their true keypoints (TRUTH_FILE)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = data_config["source"]
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".fetch-") as staging:
        staging = Path(staging)
        if source == "synthetic":
            settings = data_config["synthetic"]
            write_synthetic_csvs(staging, n_train=settings["n_train"], n_test=settings["n_test"],
                                 seed=settings["seed"])
        elif source == "kaggle":
            with tempfile.TemporaryDirectory() as download:
                archive = download_competition(data_config["competition"], download)
                _unpack_layout(archive, staging)
        elif source == "path":
            if not data_config.get("path"):
                raise KpbenchError("data.source is 'path' but data.path is not set")
            _unpack_layout(Path(data_config["path"]), staging)
        else:
            raise KpbenchError(f"unknown data.source {source!r}")
        check_raw(staging, expected_rows=KAGGLE_ROWS if source == "kaggle" else None)
        for name in RAW_FILES:
            shutil.move(staging / name, out_dir / name)
        # Only synthetic faces have a ground truth; a stale one must not sit beside other data.
        if source == "synthetic":
            shutil.move(staging / TRUTH_FILE, out_dir / TRUTH_FILE)
        else:
            (out_dir / TRUTH_FILE).unlink(missing_ok=True)


def check_raw(folder, expected_rows=None):
    """Check names, columns and (for a Kaggle download) row counts before anything is kept."""
    folder = Path(folder)
    counts = {}
    for name, columns in RAW_FILES.items():
        frame = read_kaggle_csv(folder / name, columns)
        counts[name] = len(frame)
    if expected_rows:
        for name, expected in expected_rows.items():
            if counts[name] != expected:
                raise DataError(f"{folder / name}: {counts[name]} rows, expected {expected} "
                                "for the Kaggle competition data")
    return counts


def _unpack_layout(source, dest):
    """Copy Kaggle's layout (a folder or zip, possibly holding training.zip/test.zip) into `dest`."""
    source = Path(source)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if source.is_dir():
            shutil.copytree(source, scratch, dirs_exist_ok=True)
        elif zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as archive:
                archive.extractall(scratch)
        else:
            raise DataError(f"{source}: neither a folder nor a zip archive in Kaggle's layout")
        for inner in sorted(scratch.rglob("*.zip")):
            with zipfile.ZipFile(inner) as archive:
                archive.extractall(inner.parent)
        for name in RAW_FILES:
            found = sorted(scratch.rglob(name))
            if not found:
                raise DataError(f"{source}: {name} not found (expected training.csv, test.csv and "
                                "IdLookupTable.csv, possibly inside training.zip and test.zip)")
            shutil.copyfile(found[0], dest / name)
