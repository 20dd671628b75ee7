import csv
import json
import shutil
import zipfile

import numpy as np
import pytest

from kpbench import KpbenchError
from kpbench.cli import main
from kpbench.csv_reader import (DataError, load_test_csv, load_training_csv, parse_images, parse_targets,
                                read_kaggle_csv)
from kpbench.fast_reader import read_fast
from kpbench.kaggle_format import KEYPOINTS, TEST_COLUMNS, TRAINING_COLUMNS
from kpbench.preprocess import load_dataset, preprocess, split_indices
from kpbench.sources import fetch_raw


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def _write(path, rows):
    with open(path, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def _set(path, line, column, value):
    """Set one field; `line` counts the header as line 1, as the error messages do."""
    rows = _rows(path)
    rows[line - 1][rows[0].index(column)] = value
    _write(path, rows)


def _drop_column(rows, name):
    index = rows[0].index(name)
    return [row[:index] + row[index + 1:] for row in rows]


def test_preprocessing_masks_missing_labels_instead_of_filling(raw_dir, dataset):
    images, targets, mask = load_training_csv(raw_dir / "training.csv")
    assert images.dtype == np.uint8 and images.shape == (60, 96, 96)
    assert np.array_equal(mask, ~np.isnan(targets))
    data = load_dataset(dataset / "dataset.npz")
    for split in ("train", "val"):
        rows = data[f"{split}_rows"]
        assert data[f"{split}_images"].dtype == np.float32
        assert data[f"{split}_images"].shape[1:] == (96, 96, 1)
        assert 0.0 <= data[f"{split}_images"].min() and data[f"{split}_images"].max() <= 1.0
        assert np.array_equal(data[f"{split}_mask"], mask[rows])
        # Missing targets stay missing (mask 0) instead of copying a neighbour's value.
        assert np.all(data[f"{split}_targets"][~data[f"{split}_mask"]] == 0)
        present = data[f"{split}_mask"]
        assert np.allclose(data[f"{split}_targets"][present], targets[rows][present])
        assert np.allclose(data[f"{split}_images"][..., 0] * 255, images[rows], atol=1e-3)
    assert data["test_images"].shape == (6, 96, 96, 1)


def test_split_is_deterministic_disjoint_and_complete():
    train, val = split_indices(100, 0.1, seed=7)
    again_train, again_val = split_indices(100, 0.1, seed=7)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    assert len(val) == 10 and not set(train) & set(val)
    assert sorted(set(train) | set(val)) == list(range(100))
    _, other_val = split_indices(100, 0.1, seed=8)
    assert not np.array_equal(val, other_val)


def test_statistics_count_rows_and_labels(raw_dir, dataset):
    stats = json.loads((dataset / "stats.json").read_text())
    _, _, mask = load_training_csv(raw_dir / "training.csv")
    assert stats["rows"] == 60
    assert stats["train_rows"] + stats["validation_rows"] == 60
    assert stats["validation_rows"] == 12
    assert stats["complete_rows"] == int(mask.all(axis=1).sum())
    assert stats["keypoints_present"]["nose_tip"] == int(mask[:, 2 * KEYPOINTS.index("nose_tip")].sum())
    assert sum(stats["keypoints_present"].values()) * 2 == stats["labelled_targets"]


MALFORMED = {
    "missing column": (lambda p: _write(p, _drop_column(_rows(p), "nose_tip_x")),
                       ["missing column(s) nose_tip_x"]),
    "extra column": (lambda p: _write(p, [r[:30] + ["x" if i else "extra"] + r[30:] for i, r in enumerate(_rows(p))]),
                     ["unexpected column(s) extra"]),
    "columns out of order": (lambda p: _write(p, [r[1:2] + r[0:1] + r[2:] for r in _rows(p)]),
                             ["out of order"]),
    "too few pixels": (lambda p: _set(p, 3, "Image", _rows(p)[2][-1].rsplit(" ", 1)[0]),
                       ["line 3", "column Image", "9215 pixel values", "expected 9216"]),
    "too many pixels": (lambda p: _set(p, 7, "Image", _rows(p)[6][-1] + " 12"),
                        ["line 7", "column Image", "9217 pixel values"]),
    "non-numeric pixel": (lambda p: _set(p, 2, "Image", "12a " + _rows(p)[1][-1].split(" ", 1)[1]),
                          ["line 2", "column Image", "'12a'"]),
    "pixel out of range": (lambda p: _set(p, 5, "Image", "256 " + _rows(p)[4][-1].split(" ", 1)[1]),
                           ["line 5", "column Image", "256", "out of range"]),
    "non-numeric keypoint": (lambda p: _set(p, 4, "left_eye_center_x", "abc"),
                             ["line 4", "column left_eye_center_x", "'abc' is not a number"]),
    "keypoint out of range": (lambda p: _set(p, 6, "nose_tip_y", "120.5"),
                              ["line 6", "column nose_tip_y", "outside the image"]),
    "lone coordinate": (lambda p: _set(p, 8, "nose_tip_y", ""),
                        ["line 8", "keypoint nose_tip", "without the other"]),
    "empty image": (lambda p: _set(p, 9, "Image", ""), ["line 9", "column Image", "empty"]),
    "ragged row": (lambda p: p.write_text(p.read_text().replace("\n", "\n1,", 3)),
                   ["malformed CSV"]),
    "empty file": (lambda p: p.write_text(""), ["file is empty"]),
    "header only": (lambda p: p.write_text(p.read_text().split("\n", 1)[0] + "\n"), ["no data rows"]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_training_csv_names_file_line_and_column_and_writes_nothing(case, raw_copy, tmp_path, capsys):
    corrupt, expected = MALFORMED[case]
    corrupt(raw_copy / "training.csv")
    out = tmp_path / "out"
    code = main(["preprocess", "--raw", str(raw_copy), "--dataset", str(out / "dataset.npz"),
                 "--stats", str(out / "stats.json"), "--samples", str(out / "samples.npz")])
    message = capsys.readouterr().err
    assert code == 1
    assert str(raw_copy / "training.csv") in message
    for fragment in expected:
        assert fragment in message
    assert not out.exists() or not any(out.iterdir())


def test_malformed_test_csv_is_reported(raw_copy):
    _set(raw_copy / "test.csv", 3, "ImageId", "three")
    with pytest.raises(DataError, match=r"test\.csv: line 3, column ImageId: 'three' is not an integer"):
        load_test_csv(raw_copy / "test.csv")


def test_lookup_table_must_name_known_features(raw_copy, tmp_path):
    _set(raw_copy / "IdLookupTable.csv", 4, "FeatureName", "chin_x")
    with pytest.raises(DataError, match=r"IdLookupTable\.csv: line 4, column FeatureName: unknown feature 'chin_x'"):
        preprocess(raw_copy, tmp_path / "d.npz", tmp_path / "s.json", tmp_path / "x.npz", 0.1, 0)
    assert not list(tmp_path.glob("*.npz")) and not (tmp_path / "s.json").exists()


# --- sources: path and Kaggle (the client's network call replaced by a local archive) -------------

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


@pytest.fixture
def kaggle_env(monkeypatch, tmp_path):
    """Isolate the Kaggle client from any real credentials on this machine."""
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def _replace_download(monkeypatch, action):
    from kaggle.api.kaggle_api_extended import KaggleApi

    calls = []

    def download(self, competition, path=None, force=False, quiet=True, unzip=False):
        calls.append(competition)
        action(competition, path)

    monkeypatch.setattr(KaggleApi, "competition_download_files", download)
    return calls


def test_kaggle_source_downloads_unpacks_and_checks(raw_dir, tmp_path, kaggle_env):
    kaggle_env.setenv("KAGGLE_USERNAME", "someone")
    kaggle_env.setenv("KAGGLE_KEY", "0123456789abcdef")
    archive = _kaggle_archive(raw_dir, tmp_path / "built.zip")
    calls = _replace_download(kaggle_env, lambda c, path: shutil.copy(archive, f"{path}/{c}.zip"))
    kaggle_env.setattr("kpbench.sources.KAGGLE_ROWS", {"training.csv": 60, "test.csv": 6,
                                                    "IdLookupTable.csv": len(_rows(raw_dir / "IdLookupTable.csv")) - 1})
    fetch_raw({"source": "kaggle", "competition": "facial-keypoints-detection"}, tmp_path / "raw")
    assert calls == ["facial-keypoints-detection"]
    assert (tmp_path / "raw" / "training.csv").read_bytes() == (raw_dir / "training.csv").read_bytes()


def test_kaggle_download_with_wrong_row_counts_is_rejected(raw_dir, tmp_path, kaggle_env):
    kaggle_env.setenv("KAGGLE_USERNAME", "someone")
    kaggle_env.setenv("KAGGLE_KEY", "0123456789abcdef")
    archive = _kaggle_archive(raw_dir, tmp_path / "built.zip")
    _replace_download(kaggle_env, lambda c, path: shutil.copy(archive, f"{path}/{c}.zip"))
    with pytest.raises(DataError, match="training.csv: 60 rows, expected 7049"):
        fetch_raw({"source": "kaggle"}, tmp_path / "raw")
    assert not list((tmp_path / "raw").glob("*.csv"))


def test_kaggle_without_credentials_says_what_to_do(tmp_path, kaggle_env):
    calls = _replace_download(kaggle_env, lambda c, path: None)
    with pytest.raises(KpbenchError, match=r"credentials not found.*kaggle\.json.*KAGGLE_USERNAME"):
        fetch_raw({"source": "kaggle"}, tmp_path / "raw")
    assert calls == []


@pytest.mark.parametrize("status, expected", [(403, "accept the competition's rules"), (401, "rejected the credentials")])
def test_kaggle_refusals_are_explained(tmp_path, kaggle_env, status, expected):
    import requests

    kaggle_env.setenv("KAGGLE_USERNAME", "someone")
    kaggle_env.setenv("KAGGLE_KEY", "0123456789abcdef")

    def refuse(competition, path):
        response = requests.Response()
        response.status_code = status
        raise requests.HTTPError(f"{status} Client Error", response=response)

    _replace_download(kaggle_env, refuse)
    with pytest.raises(KpbenchError, match=expected) as info:
        fetch_raw({"source": "kaggle"}, tmp_path / "raw")
    assert "0123456789abcdef" not in str(info.value)


def _careful(path):
    """The careful reader alone, as the fast one must match it."""
    frame = read_kaggle_csv(path, TRAINING_COLUMNS)
    targets, mask = parse_targets(frame, path)
    return parse_images(frame["Image"], path), targets, mask


def _same(got, expected):
    assert np.array_equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1], equal_nan=True)
    assert np.array_equal(got[2], expected[2])


def test_fast_reader_accepts_well_formed_files_and_matches_the_careful_reader(raw_copy):
    path = raw_copy / "training.csv"
    expected = _careful(path)
    values, images = read_fast(path, TRAINING_COLUMNS)
    _same((images, values.astype(np.float32), ~np.isnan(values)), expected)
    # Neither a missing final newline nor zero-padded pixels are faults.
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    assert read_fast(path, TRAINING_COLUMNS) is not None
    _same(load_training_csv(path), expected)
    rows = _rows(path)
    rows[45][-1] = " ".join(f"{int(v):03d}" for v in rows[45][-1].split(" "))
    _write(path, rows)
    assert read_fast(path, TRAINING_COLUMNS) is not None
    _same(load_training_csv(path), expected)


@pytest.mark.parametrize("variant", ["doubled spaces", "CRLF line endings", "quoted fields", "blank last line"])
def test_unusual_but_valid_files_decline_the_fast_reader_and_give_the_same_arrays(raw_copy, variant):
    path = raw_copy / "training.csv"
    expected = _careful(path)
    text = path.read_bytes()
    if variant == "doubled spaces":
        rows = _rows(path)
        rows[40][-1] = rows[40][-1].replace(" ", "  ", 5)
        _write(path, rows)
    elif variant == "CRLF line endings":
        path.write_bytes(text.replace(b"\n", b"\r\n"))
    elif variant == "quoted fields":
        rows = _rows(path)
        with open(path, "w", newline="") as handle:
            csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_ALL).writerows(rows)
    else:
        path.write_bytes(text + b"\n")
    assert read_fast(path, TRAINING_COLUMNS) is None
    _same(load_training_csv(path), expected)


@pytest.mark.parametrize("line, value, fragment", [
    (41, "256", "pixel value 256 is out of range"),
    (58, "1000", "pixel value 1000 is out of range"),
    (33, "12.5", "'12.5' is not a pixel value"),
])
def test_a_bad_pixel_beyond_the_first_chunk_is_named(raw_copy, line, value, fragment):
    path = raw_copy / "training.csv"
    _set(path, line, "Image", value + " " + _rows(path)[line - 1][-1].split(" ", 1)[1])
    assert read_fast(path, TRAINING_COLUMNS) is None
    with pytest.raises(DataError, match=rf"line {line}, column Image: {fragment}"):
        load_training_csv(path)


def test_fast_reader_reads_the_test_file(raw_copy):
    path = raw_copy / "test.csv"
    ids, images = read_fast(path, TEST_COLUMNS)
    assert ids[:, 0].tolist() == list(range(1, len(images) + 1))
    assert np.array_equal(images, parse_images([row[1] for row in _rows(path)[1:]], path))
