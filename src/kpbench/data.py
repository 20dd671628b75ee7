"""Data stage: obtain Kaggle's facial-keypoints CSVs (synthetic, Kaggle or a local copy), check them,
and turn them into masked float32 arrays with a deterministic train/validation split."""

import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from kpbench import KpbenchError
from kpbench.io import atomic_path, write_json

IMAGE_SIZE = 96
PIXELS = IMAGE_SIZE * IMAGE_SIZE

# Kaggle's 15 keypoints in its column order; "left" is the subject's left (the image's right side).
KEYPOINTS = [
    "left_eye_center", "right_eye_center",
    "left_eye_inner_corner", "left_eye_outer_corner",
    "right_eye_inner_corner", "right_eye_outer_corner",
    "left_eyebrow_inner_end", "left_eyebrow_outer_end",
    "right_eyebrow_inner_end", "right_eyebrow_outer_end",
    "nose_tip",
    "mouth_left_corner", "mouth_right_corner",
    "mouth_center_top_lip", "mouth_center_bottom_lip",
]
# The four keypoints that about 70 % of Kaggle's training rows carry alone.
CORE_KEYPOINTS = ["left_eye_center", "right_eye_center", "nose_tip", "mouth_center_bottom_lip"]
TARGET_COLUMNS = [f"{name}_{axis}" for name in KEYPOINTS for axis in ("x", "y")]
TRAINING_COLUMNS = TARGET_COLUMNS + ["Image"]
TEST_COLUMNS = ["ImageId", "Image"]
LOOKUP_COLUMNS = ["RowId", "ImageId", "FeatureName", "Location"]
RAW_FILES = {"training.csv": TRAINING_COLUMNS, "test.csv": TEST_COLUMNS, "IdLookupTable.csv": LOOKUP_COLUMNS}
# Row counts of the real competition files; a Kaggle download with other counts is not the dataset.
KAGGLE_ROWS = {"training.csv": 7049, "test.csv": 1783, "IdLookupTable.csv": 27124}
KAGGLE_COMPETITION = "facial-keypoints-detection"


class DataError(KpbenchError):
    """Malformed input data; the message names the file, and the row and column where known."""


# --- reading and checking Kaggle-format CSVs -------------------------------------------------------

def read_kaggle_csv(path, columns):
    """Read a Kaggle CSV as strings and check its header; the caller converts and range-checks."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    _check_field_counts(path, len(columns))
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


def _check_field_counts(path, expected):
    """Every line must have as many fields as the header names; pandas would silently shift a row
    with one field too many into an index column. Kaggle's files quote nothing, so commas count."""
    text = np.frombuffer(Path(path).read_bytes(), dtype=np.uint8)
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
    out_of_range = ~np.isnan(values) & ((values < 0) | (values > IMAGE_SIZE))
    if out_of_range.any():
        row, col = np.argwhere(out_of_range)[0]
        raise DataError(f"{path}: line {_line(row)}, column {TARGET_COLUMNS[col]}: "
                        f"{raw[row, col]} is outside the image [0, {IMAGE_SIZE}]")
    mask = ~np.isnan(values)
    # A keypoint is present only with both coordinates: a lone x or y is malformed.
    half = mask[:, 0::2] != mask[:, 1::2]
    if half.any():
        row, point = np.argwhere(half)[0]
        raise DataError(f"{path}: line {_line(row)}, keypoint {KEYPOINTS[point]}: "
                        "one coordinate is given without the other")
    return values.astype(np.float32), mask


def parse_images(strings, path, column="Image"):
    """Space-separated pixel strings → uint8 array (rows, 96, 96), without a Python loop.

    Well-formed input (digits and single spaces, 9,216 values per row, all at most 255) is parsed
    in one C-level pass; anything else goes through `_parse_images_checked`, which finds and names
    the first fault or, if the input was only oddly spaced, returns the same arrays.
    """
    strings = pd.Series(strings, dtype=str).reset_index(drop=True)
    parsed = _parse_images_fast(strings)
    return parsed if parsed is not None else _parse_images_checked(strings, path, column)


def _parse_images_fast(strings):
    """The common case at C speed, or None when any check fails."""
    import warnings

    lengths = strings.str.len().to_numpy(dtype=np.int64)
    if len(lengths) == 0 or (lengths == 0).any():
        return None
    text = " ".join(strings)
    try:
        buf = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        return None
    spaces = buf == 32
    if ((buf - np.uint8(48) > 9) & ~spaces).any():
        return None
    # Each row's segment holds its 9,215 separators plus the space that joins it to the next row.
    row_starts = np.concatenate(([0], np.cumsum(lengths[:-1] + 1)))
    separators = np.add.reduceat(spaces.view(np.uint8), row_starts, dtype=np.int32)
    separators[-1] += 1
    if (separators != PIXELS).any():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            values = np.fromstring(text, dtype=np.int32, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    if values.size != len(strings) * PIXELS or values.max() > 255:
        return None
    return values.astype(np.uint8).reshape(len(strings), IMAGE_SIZE, IMAGE_SIZE)


def _parse_images_checked(strings, path, column):
    """Token by token in array operations: slower, but it names the row and value at fault."""
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
    frame = read_kaggle_csv(path, TRAINING_COLUMNS)
    targets, mask = parse_targets(frame, path)
    images = parse_images(frame["Image"], path)
    return images, targets, mask


def load_test_csv(path):
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


# --- obtaining the raw files -----------------------------------------------------------------------

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


def _download_kaggle(competition, dest):
    """Download the competition archive with the official client; explain the usual refusals."""
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    try:
        api.authenticate()
    except SystemExit:
        raise KpbenchError(
            "Kaggle credentials not found. Create an API token at https://www.kaggle.com/settings "
            "and save it as ~/.kaggle/kaggle.json (or set KAGGLE_USERNAME and KAGGLE_KEY), "
            "or use data.source: synthetic.") from None
    try:
        api.competition_download_files(competition, path=str(dest), quiet=True)
    except Exception as exc:  # the client raises requests.HTTPError; its status says what went wrong
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 403:
            raise KpbenchError(
                f"Kaggle refused the download of '{competition}' (403): accept the competition's "
                f"rules first at https://www.kaggle.com/c/{competition}/rules, then run again.") from None
        if status == 401:
            raise KpbenchError("Kaggle rejected the credentials (401): create a new API token at "
                               "https://www.kaggle.com/settings.") from None
        if status == 404:
            raise KpbenchError(f"Kaggle has no competition named '{competition}' (404).") from None
        raise KpbenchError(f"Kaggle download of '{competition}' failed: {type(exc).__name__}") from None
    archives = sorted(Path(dest).glob("*.zip"))
    if not archives:
        raise KpbenchError(f"Kaggle download of '{competition}' produced no archive in {dest}")
    return archives[0]


def fetch_raw(data_config, out_dir, synthetic_seed=None):
    """Write training.csv, test.csv and IdLookupTable.csv for the configured source into `out_dir`,
    all or nothing."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = data_config["source"]
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".fetch-") as staging:
        staging = Path(staging)
        if source == "synthetic":
            from kpbench.synthetic import write_synthetic_csvs

            settings = data_config["synthetic"]
            write_synthetic_csvs(staging, n_train=settings["n_train"], n_test=settings["n_test"],
                                 seed=settings["seed"])
        elif source == "kaggle":
            with tempfile.TemporaryDirectory() as download:
                archive = _download_kaggle(data_config.get("competition", KAGGLE_COMPETITION), download)
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


# --- preprocessing ---------------------------------------------------------------------------------

def split_indices(n_rows, validation_fraction, seed):
    """Deterministic shuffled split: the same seed and size always give the same validation rows."""
    order = np.random.default_rng(seed).permutation(n_rows)
    n_val = max(1, int(round(validation_fraction * n_rows)))
    if n_val >= n_rows:
        raise KpbenchError(f"validation_fraction {validation_fraction} leaves no training rows "
                           f"out of {n_rows}")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def dataset_statistics(mask, n_train, n_val, n_test):
    present = mask[:, 0::2]
    per_keypoint = {name: int(present[:, i].sum()) for i, name in enumerate(KEYPOINTS)}
    core = [KEYPOINTS.index(k) for k in CORE_KEYPOINTS]
    only_core = present[:, core].all(axis=1) & (present.sum(axis=1) == len(core))
    return {
        "rows": int(mask.shape[0]),
        "complete_rows": int(present.all(axis=1).sum()),
        "core_only_rows": int(only_core.sum()),
        "labelled_targets": int(mask.sum()),
        "keypoints_present": per_keypoint,
        "train_rows": int(n_train),
        "validation_rows": int(n_val),
        "test_rows": int(n_test),
        "image_size": IMAGE_SIZE,
    }


def preprocess(raw_dir, dataset_path, stats_path, samples_path, validation_fraction, seed, n_samples=12):
    """Raw CSVs → one .npz of float32 images in [0, 1], pixel targets (0 where missing) and masks,
    plus the statistics and a few sample faces the paper shows (small enough to store with results)."""
    raw_dir = Path(raw_dir)
    images, targets, mask = load_training_csv(raw_dir / "training.csv")
    test_images = load_test_csv(raw_dir / "test.csv")
    check_lookup_csv(raw_dir / "IdLookupTable.csv", len(test_images))
    train_idx, val_idx = split_indices(len(images), validation_fraction, seed)
    pixels = (images.astype(np.float32) / 255.0)[..., np.newaxis]
    targets = np.nan_to_num(targets, nan=0.0)
    arrays = {
        "train_images": pixels[train_idx], "train_targets": targets[train_idx],
        "train_mask": mask[train_idx], "train_rows": train_idx,
        "val_images": pixels[val_idx], "val_targets": targets[val_idx],
        "val_mask": mask[val_idx], "val_rows": val_idx,
        "test_images": (test_images.astype(np.float32) / 255.0)[..., np.newaxis],
    }
    stats = dataset_statistics(mask, len(train_idx), len(val_idx), len(test_images))
    stats.update(validation_fraction=validation_fraction, split_seed=seed)
    with atomic_path(dataset_path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    samples = train_idx[:n_samples]
    with atomic_path(samples_path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, images=images[samples], targets=targets[samples],
                                mask=mask[samples])
    write_json(stats_path, stats)
    return stats


def load_dataset(path):
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}
