import zipfile

import pytest

from csv_edit import read_rows
from kaggle_stand_in import fake_kaggle  # noqa: F401  (a fixture)
from kpbench.data.csv_reader import DataError
from kpbench.data.sources import fetch_raw
from workflow import checkout, planned_jobs, snakemake


def _kaggle_archive(raw_dir, path):
    """The competition's layout: training.zip and test.zip inside the download, lookup table beside."""
    inner = path.parent
    with zipfile.ZipFile(inner / "training.zip", "w") as z:
        z.write(raw_dir / "training.csv", "training.csv")
    with zipfile.ZipFile(inner / "test.zip", "w") as z:
        z.write(raw_dir / "test.csv", "test.csv")
    with zipfile.ZipFile(path, "w") as z:
        z.write(inner / "training.zip", "training.zip")
        z.write(inner / "test.zip", "test.zip")
        z.write(raw_dir / "IdLookupTable.csv", "IdLookupTable.csv")
        z.writestr("SampleSubmission.csv", "RowId,Location\n")
    return path


@pytest.mark.parametrize("as_zip", [True, False])
def test_path_source_accepts_kaggles_layout_as_zip_or_folder(raw_dir, tmp_path, as_zip):
    archive = _kaggle_archive(raw_dir, tmp_path / "facial-keypoints-detection.zip")
    source = archive
    if not as_zip:
        source = tmp_path / "unpacked"
        zipfile.ZipFile(archive).extractall(source)
    fetch_raw({"source": "path", "path": str(source)}, tmp_path / "raw")
    for name in ("training.csv", "test.csv", "IdLookupTable.csv"):
        assert (tmp_path / "raw" / name).read_bytes() == (raw_dir / name).read_bytes()


def test_path_source_with_a_missing_file_fails_and_keeps_nothing(raw_dir, tmp_path):
    source = tmp_path / "folder"
    source.mkdir()
    (source / "training.csv").write_bytes((raw_dir / "training.csv").read_bytes())
    with pytest.raises(DataError, match="test.csv not found"):
        fetch_raw({"source": "path", "path": str(source)}, tmp_path / "raw")
    assert not list((tmp_path / "raw").iterdir())


def test_kaggle_source_downloads_unpacks_and_checks(raw_dir, tmp_path, fake_kaggle, monkeypatch):  # noqa: F811
    fake_kaggle.token_in_env()
    fake_kaggle.competition("facial-keypoints-detection", _kaggle_archive(raw_dir, tmp_path / "built.zip"))
    monkeypatch.setattr("kpbench.data.sources.KAGGLE_ROWS", {
        "training.csv": 60, "test.csv": 6, "IdLookupTable.csv": len(read_rows(raw_dir / "IdLookupTable.csv")) - 1})
    fetch_raw({"source": "kaggle", "competition": "facial-keypoints-detection"}, tmp_path / "raw")
    for name in ("training.csv", "test.csv", "IdLookupTable.csv"):
        assert (tmp_path / "raw" / name).read_bytes() == (raw_dir / name).read_bytes()


def test_kaggle_download_with_wrong_row_counts_is_rejected(raw_dir, tmp_path, fake_kaggle):  # noqa: F811
    fake_kaggle.legacy_json()
    fake_kaggle.competition("facial-keypoints-detection", _kaggle_archive(raw_dir, tmp_path / "built.zip"))
    with pytest.raises(DataError, match="training.csv: 60 rows, expected 7049"):
        fetch_raw({"source": "kaggle", "competition": "facial-keypoints-detection"}, tmp_path / "raw")
    assert not list((tmp_path / "raw").glob("*.csv"))


def test_the_local_copy_is_an_input_of_fetch_data(raw_dir, tmp_path):
    """Snakemake must see the file data.source: path reads: missing, it is named before any job runs;
    replaced by a newer copy, the raw files are fetched again."""
    root = checkout(tmp_path)
    copy = tmp_path / "kaggle-copy.zip"
    (root / "local.yaml").write_text(f"data:\n  source: path\n  path: {copy}\n")
    target = ["-n", "--cores", "1", "data/raw/training.csv", "--configfile", "tiny.yaml", "local.yaml"]
    missing = snakemake(root, *target, check=False)
    said = missing.stdout + missing.stderr
    assert missing.returncode != 0 and "Missing input files" in said and str(copy) in said
    (root / "data" / "raw").mkdir(parents=True)
    for name in ("training.csv", "test.csv", "IdLookupTable.csv"):
        (root / "data" / "raw" / name).write_text("")
    _kaggle_archive(raw_dir, copy)
    assert planned_jobs(snakemake(root, *target).stdout) == {"fetch_data": 1}
