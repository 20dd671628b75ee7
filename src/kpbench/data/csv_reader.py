"""The careful reader: Kaggle-format CSVs checked field by field, every fault named by file, line and
column. The loaders try the fast reader first and fall back here when it declines."""

from pathlib import Path

import numpy as np
import pandas as pd

from kpbench import KpbenchError
from kpbench.data.fast_reader import read_fast
from kpbench.data.kaggle_format import (
    IMAGE_SIZE,
    KEYPOINTS,
    LOOKUP_COLUMNS,
    PIXELS,
    TARGET_COLUMNS,
    TEST_COLUMNS,
    TRAINING_COLUMNS,
)


class DataError(KpbenchError):
    """Malformed input data; the message names the file, and the row and column where known."""


# How the archives a download may leave packed begin, to say what a file that is not text holds.
_ARCHIVE_MAGIC = {b"\x1f\x8b": "a gzip archive", b"PK\x03\x04": "a zip archive", b"BZh": "a bzip2 archive",
                  b"\xfd7zXZ\x00": "an xz archive"}


def read_kaggle_csv(path, columns):
    """Read a Kaggle CSV as strings and check its header; the caller converts and range-checks."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    raw = path.read_bytes()
    _check_text(path, raw)
    _check_field_counts(path, raw, len(columns))
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed CSV: {exc}") from None
    missing = [c for c in columns if c not in frame.columns]
    extra = [c for c in frame.columns if c not in columns]
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing column(s) " + ", ".join(missing))
        if extra:
            parts.append("unexpected column(s) " + ", ".join(map(str, extra)))
        raise DataError(f"{path}: " + "; ".join(parts))
    if list(frame.columns) != list(columns):
        raise DataError(f"{path}: columns are out of order; expected {', '.join(columns)}")
    if len(frame) == 0:
        raise DataError(f"{path}: no data rows after the header")
    return frame


def _check_text(path, raw):
    """Kaggle's files are plain text: a compressed or binary file is named as such, where pandas
    would stop with a UnicodeDecodeError (or read NUL bytes as if they were fields)."""
    for magic, kind in _ARCHIVE_MAGIC.items():
        if raw.startswith(magic):
            raise DataError(f"{path}: not a CSV text file but {kind}; unpack it first")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a CSV text file (byte {exc.start + 1} is not UTF-8 text)") from None
    if b"\x00" in raw:
        raise DataError(f"{path}: not a CSV text file (it holds NUL bytes)")


def _check_field_counts(path, raw, expected):
    """Every line must have as many fields as the header names; pandas would silently shift a row
    with one field too many into an index column. Kaggle's files quote nothing, so commas count."""
    text = np.frombuffer(raw, dtype=np.uint8)
    newlines = np.flatnonzero(text == 10)
    if len(newlines) == 0 or newlines[-1] != len(text) - 1:
        newlines = np.append(newlines, len(text))
    line_of_comma = np.searchsorted(newlines, np.flatnonzero(text == 44))
    fields = np.bincount(line_of_comma, minlength=len(newlines)) + 1
    line_length = np.diff(np.concatenate(([-1], newlines))) - 1
    bad = (fields != expected) & (line_length > 0)
    if bad[0]:
        return  # the header is checked by name, with a better message
    if bad.any():
        line = int(np.argmax(bad))
        raise DataError(f"{path}: malformed CSV: line {line + 1} has {fields[line]} fields, expected {expected}")


def _line(row):
    """CSV line number of data row `row` (0-based), the header being line 1."""
    return int(row) + 2


def parse_targets(frame, path):
    """Keypoint columns → float32 pixels (NaN where missing) and the presence mask."""
    raw = frame[TARGET_COLUMNS].to_numpy(dtype=str)
    empty = raw == ""
    values = pd.DataFrame(raw).apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(values) & ~empty
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{path}: line {_line(row)}, column {TARGET_COLUMNS[col]}: "
                        f"{str(raw[row, col])!r} is not a number")
    out_of_range = _out_of_range(values)
    if out_of_range.any():
        row, col = np.argwhere(out_of_range)[0]
        raise DataError(f"{path}: line {_line(row)}, column {TARGET_COLUMNS[col]}: "
                        f"{raw[row, col]} is outside the image [0, {IMAGE_SIZE}]")
    lone = _lone_coordinates(values)
    if lone.any():
        row, point = np.argwhere(lone)[0]
        raise DataError(f"{path}: line {_line(row)}, keypoint {KEYPOINTS[point]}: "
                        "one coordinate is given without the other")
    return values.astype(np.float32), ~np.isnan(values)


def _out_of_range(values):
    return ~np.isnan(values) & ((values < 0) | (values > IMAGE_SIZE))


def _lone_coordinates(values):
    """A keypoint is present only with both coordinates: a lone x or y is malformed."""
    present = ~np.isnan(values)
    return present[:, 0::2] != present[:, 1::2]


def _targets_valid(values):
    return not (_out_of_range(values).any() or _lone_coordinates(values).any())


def parse_images(strings, path, column="Image"):
    """Space-separated pixel strings → uint8 array (rows, 96, 96), naming the row and value at fault.

    Token by token in array operations; extra spaces between values are tolerated."""
    strings = pd.Series(strings, dtype=str).reset_index(drop=True)
    lengths = strings.str.len().to_numpy(dtype=np.int64)
    if (lengths == 0).any():
        row = int(np.argmax(lengths == 0))
        raise DataError(f"{path}: line {_line(row)}, column {column}: empty")
    try:
        buf = np.frombuffer(" ".join(strings).encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        row = int(np.argmax(~strings.map(str.isascii).to_numpy()))
        raise DataError(f"{path}: line {_line(row)}, column {column}: non-ASCII characters") from None
    row_starts = np.concatenate(([0], np.cumsum(lengths[:-1] + 1)))

    def row_of(offset):
        return int(np.searchsorted(row_starts, offset, side="right") - 1)

    is_space = buf == 32
    bad_char = ~is_space & ((buf < 48) | (buf > 57))
    if bad_char.any():
        offset = int(np.argmax(bad_char))
        row = row_of(offset)
        text, local = strings.iloc[row], offset - row_starts[row]
        token = text[text.rfind(" ", 0, local) + 1:].split(" ", 1)[0]
        raise DataError(f"{path}: line {_line(row)}, column {column}: {token!r} is not a pixel value "
                        "(integers 0-255 separated by spaces)")
    is_digit = ~is_space
    edges = np.diff(np.concatenate(([False], is_digit, [False])).astype(np.int8))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    counts = np.bincount(np.searchsorted(row_starts, starts, side="right") - 1, minlength=len(strings))
    if (counts != PIXELS).any():
        row = int(np.argmax(counts != PIXELS))
        raise DataError(f"{path}: line {_line(row)}, column {column}: {counts[row]} pixel values, "
                        f"expected {PIXELS} ({IMAGE_SIZE}x{IMAGE_SIZE})")
    width = ends - starts
    digits = buf.astype(np.int32) - 48
    last = len(buf) - 1
    values = digits[starts]
    for k in (1, 2):
        longer = width > k
        values = np.where(longer, values * 10 + digits[np.minimum(starts + k, last)], values)
    too_big = (width > 3) | (values > 255)
    if too_big.any():
        index = int(np.argmax(too_big))
        row = row_of(starts[index])
        token = bytes(buf[starts[index]:ends[index]]).decode()
        raise DataError(f"{path}: line {_line(row)}, column {column}: pixel value {token} "
                        "is out of range 0-255")
    return values.astype(np.uint8).reshape(len(strings), IMAGE_SIZE, IMAGE_SIZE)


def load_training_csv(path):
    """training.csv → uint8 images, float32 targets (NaN where missing) and the presence mask."""
    fast = read_fast(path, TRAINING_COLUMNS)
    if fast is not None and _targets_valid(fast[0]):
        values, images = fast
        return images, values.astype(np.float32), ~np.isnan(values)
    frame = read_kaggle_csv(path, TRAINING_COLUMNS)
    targets, mask = parse_targets(frame, path)
    images = parse_images(frame["Image"], path)
    return images, targets, mask


def load_test_csv(path):
    """test.csv → uint8 images; its ImageId column must hold integers."""
    fast = read_fast(path, TEST_COLUMNS)
    if fast is not None and not np.isnan(fast[0]).any():
        return fast[1]
    frame = read_kaggle_csv(path, TEST_COLUMNS)
    ids = pd.to_numeric(frame["ImageId"], errors="coerce")
    if ids.isna().any():
        row = int(np.argmax(ids.isna().to_numpy()))
        raise DataError(f"{path}: line {_line(row)}, column ImageId: {frame['ImageId'][row]!r} "
                        "is not an integer")
    return parse_images(frame["Image"], path)


def check_lookup_csv(path, n_test_images):
    """IdLookupTable.csv must name only known features of existing test images."""
    frame = read_kaggle_csv(path, LOOKUP_COLUMNS)
    unknown = ~frame["FeatureName"].isin(TARGET_COLUMNS)
    if unknown.any():
        row = int(np.argmax(unknown.to_numpy()))
        raise DataError(f"{path}: line {_line(row)}, column FeatureName: unknown feature "
                        f"{frame['FeatureName'][row]!r}")
    ids = pd.to_numeric(frame["ImageId"], errors="coerce").to_numpy()
    bad = np.isnan(ids) | (ids < 1) | (ids > n_test_images)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}: line {_line(row)}, column ImageId: {frame['ImageId'][row]!r} "
                        f"is not an image of test.csv (1-{n_test_images})")
    return len(frame)
