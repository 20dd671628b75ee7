import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kpbench
from csv_edit import read_rows, set_field, write_rows
from kpbench.cli.main import main
from kpbench.data.csv_reader import (
    DataError,
    load_test_csv,
    load_training_csv,
    parse_images,
    parse_targets,
    read_kaggle_csv,
)
from kpbench.data.fast_reader import read_fast
from kpbench.data.kaggle_format import TEST_COLUMNS, TRAINING_COLUMNS
from kpbench.data.preprocess import preprocess


def _drop_column(rows, name):
    index = rows[0].index(name)
    return [row[:index] + row[index + 1:] for row in rows]


MALFORMED = {
    "missing column": (lambda p: write_rows(p, _drop_column(read_rows(p), "nose_tip_x")),
                       ["missing column(s) nose_tip_x"]),
    "extra column": (lambda p: write_rows(p, [r[:30] + ["x" if i else "extra"] + r[30:] for i, r in enumerate(read_rows(p))]),
                     ["unexpected column(s) extra"]),
    "columns out of order": (lambda p: write_rows(p, [r[1:2] + r[0:1] + r[2:] for r in read_rows(p)]),
                             ["out of order"]),
    "too few pixels": (lambda p: set_field(p, 3, "Image", read_rows(p)[2][-1].rsplit(" ", 1)[0]),
                       ["line 3", "column Image", "9215 pixel values", "expected 9216"]),
    "too many pixels": (lambda p: set_field(p, 7, "Image", read_rows(p)[6][-1] + " 12"),
                        ["line 7", "column Image", "9217 pixel values"]),
    "non-numeric pixel": (lambda p: set_field(p, 2, "Image", "12a " + read_rows(p)[1][-1].split(" ", 1)[1]),
                          ["line 2", "column Image", "'12a'"]),
    "pixel out of range": (lambda p: set_field(p, 5, "Image", "256 " + read_rows(p)[4][-1].split(" ", 1)[1]),
                           ["line 5", "column Image", "256", "out of range"]),
    "non-numeric keypoint": (lambda p: set_field(p, 4, "left_eye_center_x", "abc"),
                             ["line 4", "column left_eye_center_x", "'abc' is not a number"]),
    "keypoint out of range": (lambda p: set_field(p, 6, "nose_tip_y", "120.5"),
                              ["line 6", "column nose_tip_y", "outside the image"]),
    "lone coordinate": (lambda p: set_field(p, 8, "nose_tip_y", ""),
                        ["line 8", "keypoint nose_tip", "without the other"]),
    "empty image": (lambda p: set_field(p, 9, "Image", ""), ["line 9", "column Image", "empty"]),
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
                 "--stats", str(out / "stats.json"), "--samples", str(out / "samples.npz"),
                 "--validation-fraction", "0.1", "--seed", "42"])
    message = capsys.readouterr().err
    assert code == 1
    assert str(raw_copy / "training.csv") in message
    for fragment in expected:
        assert fragment in message
    assert not out.exists() or not any(out.iterdir())

def test_malformed_test_csv_is_reported(raw_copy):
    set_field(raw_copy / "test.csv", 3, "ImageId", "three")
    with pytest.raises(DataError, match=r"test\.csv: line 3, column ImageId: 'three' is not an integer"):
        load_test_csv(raw_copy / "test.csv")

def test_lookup_table_must_name_known_features(raw_copy, tmp_path):
    set_field(raw_copy / "IdLookupTable.csv", 4, "FeatureName", "chin_x")
    with pytest.raises(DataError, match=r"IdLookupTable\.csv: line 4, column FeatureName: unknown feature 'chin_x'"):
        preprocess(raw_copy, tmp_path / "d.npz", tmp_path / "s.json", tmp_path / "x.npz", 0.1, 0)
    assert not list(tmp_path.glob("*.npz")) and not (tmp_path / "s.json").exists()

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
    rows = read_rows(path)
    rows[45][-1] = " ".join(f"{int(v):03d}" for v in rows[45][-1].split(" "))
    write_rows(path, rows)
    assert read_fast(path, TRAINING_COLUMNS) is not None
    _same(load_training_csv(path), expected)

@pytest.mark.parametrize("variant", ["doubled spaces", "CRLF line endings", "quoted fields", "blank last line"])
def test_unusual_but_valid_files_decline_the_fast_reader_and_give_the_same_arrays(raw_copy, variant):
    path = raw_copy / "training.csv"
    expected = _careful(path)
    text = path.read_bytes()
    if variant == "doubled spaces":
        rows = read_rows(path)
        rows[40][-1] = rows[40][-1].replace(" ", "  ", 5)
        write_rows(path, rows)
    elif variant == "CRLF line endings":
        path.write_bytes(text.replace(b"\n", b"\r\n"))
    elif variant == "quoted fields":
        rows = read_rows(path)
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
    set_field(path, line, "Image", value + " " + read_rows(path)[line - 1][-1].split(" ", 1)[1])
    assert read_fast(path, TRAINING_COLUMNS) is None
    with pytest.raises(DataError, match=rf"line {line}, column Image: {fragment}"):
        load_training_csv(path)

def test_fast_reader_reads_the_test_file(raw_copy):
    path = raw_copy / "test.csv"
    ids, images = read_fast(path, TEST_COLUMNS)
    assert ids[:, 0].tolist() == list(range(1, len(images) + 1))
    assert np.array_equal(images, parse_images([row[1] for row in read_rows(path)[1:]], path))


@pytest.mark.parametrize("content, fragment", [
    (lambda text: gzip.compress(text), "not a CSV text file but a gzip archive"),
    (lambda text: bytes(range(256)) * 64, "not a CSV text file (byte 129 is not UTF-8 text)"),
    (lambda text: text[:5000] + b"\x00\x00" + text[5000:], "not a CSV text file (it holds NUL bytes)"),
], ids=["gzip", "binary", "NUL bytes"])
def test_a_training_csv_that_is_not_text_is_named_without_a_traceback(raw_copy, tmp_path, content, fragment):
    training = raw_copy / "training.csv"
    training.write_bytes(content(training.read_bytes()))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "kpbench", "preprocess", "--raw", str(raw_copy), "--dataset", str(out / "dataset.npz"),
         "--stats", str(out / "stats.json"), "--samples", str(out / "samples.npz"),
         "--validation-fraction", "0.2", "--seed", "3"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(kpbench.__file__).parents[1])})
    assert result.returncode == 1
    assert result.stderr.startswith(f"kpbench preprocess: error: {training}: {fragment}")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_the_sample_faces_carry_incomplete_labels_as_the_data_does(dataset):
    """The paper's sample faces are spread over the training split, not its leading complete rows."""
    stats = json.loads((dataset / "stats.json").read_text())
    with np.load(dataset / "samples.npz") as samples:
        complete = samples["mask"].all(axis=1)
    assert 0 < complete.sum() < len(complete)
    assert abs(complete.mean() - stats["complete_rows"] / stats["rows"]) < 0.35
