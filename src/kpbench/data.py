"""Data stage: obtain Kaggle's facial-keypoints CSVs (synthetic, Kaggle or a local copy), check them,
and turn them into masked float32 arrays with a deterministic train/validation split."""

import io
import mmap
import os
import shutil
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
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
# The synthetic source's true keypoints, written beside its CSVs (kpbench.synthetic).
TRUTH_FILE = "truth.npz"


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


# --- the fast reader: well-formed files at memory speed --------------------------------------------
#
# The original study spent ≈ 18 s turning training.csv into arrays. A well-formed Kaggle file is
# read here in one pass over its mapped bytes, with every check the careful reader above makes
# folded into counts that a single fault would change. Anything unexpected (quotes, CR, odd
# spacing, a bad value) makes the fast reader decline, and the careful reader then names the fault
# or, for input that is merely unusual, returns the same arrays.

ROWS_PER_CHUNK = 16  # ≈ 0.55 MB of pixel text; 16-32 rows measured fastest (work arrays about L2-sized)
_GAP = np.uint8(250)  # marks bytes outside the Image fields: neither a digit nor a space once shifted
_SPACE = np.uint8(32 + 256 - 48)  # a space after the shift by -48 (wraps around)


def _read_fast(path, columns):
    """(values of the columns before Image as float64, uint8 images) or None to decline."""
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _parse_mapped(data, columns)
    except (OSError, ValueError):  # missing, unreadable or empty: the careful reader explains
        return None


def _parse_mapped(data, columns):
    """The fast reader on the mapped file: header, rows, leading fields, then the Image fields."""
    header = (",".join(columns) + "\n").encode()
    if data[:len(header)] != header or len(data) == len(header):
        return None
    rows = _split_rows(data, len(header), len(columns) - 1)
    if rows is None:
        return None
    leading, starts, ends = rows
    values = _parse_leading_fields(leading, columns[:-1])
    if values is None:
        return None
    images = _parse_pixel_fields(np.frombuffer(data, dtype=np.uint8), starts, ends)
    return None if images is None else (values, images)


def _split_rows(data, offset, n_leading):
    """Each line's leading fields (bytes) and its Image field's [start, end) offsets, or None when a
    line has the wrong number of commas. Image is the last column: it starts after the last comma."""
    leading, starts, ends = [], [], []
    while offset < len(data):
        end = data.find(b"\n", offset)
        if end < 0:
            end = len(data)
        comma = data.rfind(b",", offset, end)
        if comma < 0:
            return None
        fields = data[offset:comma]
        if fields.count(b",") != n_leading - 1:
            return None
        leading.append(fields)
        starts.append(comma + 1)
        ends.append(end)
        offset = end + 1
    return leading, np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)


def _parse_leading_fields(leading, names):
    """Plain decimals (or empty) only; anything else ('nan', exponents, spaces) declines."""
    block = b"\n".join(leading) + b"\n"
    if block.translate(None, b"0123456789.,-\n"):
        return None
    try:
        frame = pd.read_csv(io.BytesIO(block), header=None, names=names, dtype=np.float64,
                            keep_default_na=False, na_values=[""], skip_blank_lines=False)
    except (ValueError, pd.errors.ParserError):
        return None
    values = frame.to_numpy(dtype=np.float64)
    return values if len(values) == len(leading) else None


def _parse_pixel_fields(text, starts, ends):
    """All rows' Image fields → uint8 (rows, 96, 96), or None if any chunk declines.

    One thread per core, each with its own work arrays (NumPy releases the GIL inside its loops;
    reusing the arrays avoids a fresh, page-faulting allocation per operation)."""
    images = np.empty((len(starts), PIXELS), dtype=np.uint8)
    chunks = [slice(i, i + ROWS_PER_CHUNK) for i in range(0, len(starts), ROWS_PER_CHUNK)]
    workers = min(len(os.sched_getaffinity(0)), len(chunks))
    longest = max(ends[rows][-1] - starts[rows][0] for rows in chunks) + 4

    def parse_share(worker):
        work = _ChunkArrays(longest)
        return all(work.parse(text, starts[rows], ends[rows], images[rows])
                   for rows in chunks[worker::workers])

    with ThreadPoolExecutor(workers) as pool:
        accepted = list(pool.map(parse_share, range(workers)))
    return images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE) if all(accepted) else None


class _ChunkArrays:
    """Work arrays for parsing chunks of consecutive Image fields."""

    def __init__(self, size):
        self.shifted = np.empty(size, dtype=np.uint8)
        self.digits = np.empty(size, dtype=np.uint8)
        self.is_digit = np.empty(size, dtype=bool)
        self.flags = np.empty(size, dtype=bool)
        self.values = np.empty(size, dtype=np.uint16)

    def parse(self, text, starts, ends, out):
        """Parse the Image fields text[starts[i]:ends[i]] into `out`; False if any is not plain pixels.

        The bytes between the fields (newline, leading fields, comma) are overwritten with a gap
        marker, so every check is a count over the chunk: 9,216 digit runs per field, 9,215 spaces per
        field and nothing else besides digits, no run longer than 3 digits, no value above 255. The
        counts leave no room for a leading, trailing or doubled space (9,216 runs need 9,215 gaps)."""
        base = starts[0] - 3  # a margin of three bytes so the look-backs never leave the chunk
        size = ends[-1] + 1 - base
        shifted = self.shifted[:size]
        np.subtract(text[base:ends[-1]], np.uint8(48), out=shifted[:-1])  # digits become 0-9
        shifted[:3] = _GAP
        for gap_start, gap_end in zip(ends[:-1] - base, starts[1:] - base):
            shifted[gap_start:gap_end] = _GAP
        shifted[-1] = _GAP
        is_digit = np.less(shifted, 10, out=self.is_digit[:size])
        spaces = np.count_nonzero(np.equal(shifted, _SPACE, out=self.flags[:size]))
        field_bytes = int((ends - starts).sum())
        if spaces != (PIXELS - 1) * len(starts) or np.count_nonzero(is_digit) != field_bytes - spaces:
            return False
        four_digits = np.logical_and(is_digit[3:], is_digit[2:-1], out=self.flags[:size - 3])
        four_digits &= is_digit[1:-2]
        four_digits &= is_digit[:-3]
        if four_digits.any():
            return False
        run_ends = np.flatnonzero(np.greater(is_digit[:-1], is_digit[1:], out=self.flags[:size - 1]))
        runs_per_field = np.diff(np.searchsorted(run_ends, np.append(starts - base, ends[-1] - base)))
        if (runs_per_field != PIXELS).any():
            return False
        digits = np.multiply(shifted, is_digit, out=self.digits[:size])
        # values[i] reads bytes i, i+1, i+2 as a number; the hundreds only count when the tens
        # digit belongs to the same run (shorter runs have zeros in front after masking)
        values = np.multiply(digits[:-2], is_digit[1:-1], out=self.values[:size - 2], dtype=np.uint16)
        values *= 10
        values += digits[1:-1]
        values *= 10
        values += digits[2:]
        run_ends -= 2
        pixels = values[run_ends]
        if pixels.max() > 255:
            return False
        out[...] = pixels.reshape(out.shape)
        return True


def load_training_csv(path):
    """training.csv → uint8 images, float32 targets (NaN where missing) and the presence mask."""
    fast = _read_fast(path, TRAINING_COLUMNS)
    if fast is not None and _targets_valid(fast[0]):
        values, images = fast
        return images, values.astype(np.float32), ~np.isnan(values)
    frame = read_kaggle_csv(path, TRAINING_COLUMNS)
    targets, mask = parse_targets(frame, path)
    images = parse_images(frame["Image"], path)
    return images, targets, mask


def load_test_csv(path):
    fast = _read_fast(path, TEST_COLUMNS)
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
    all or nothing; for synthetic faces also their true keypoints (TRUTH_FILE)."""
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
