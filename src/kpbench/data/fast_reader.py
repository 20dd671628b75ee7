"""The fast reader: a well-formed Kaggle CSV at memory speed.

The original study spent ≈ 18 s turning training.csv into arrays. A well-formed Kaggle file is read
here in one pass over its mapped bytes, with every check the careful reader (kpbench.data.csv_reader)
makes folded into counts that a single fault would change. Anything unexpected (quotes, CR, odd
spacing, a bad value, bytes that are not text) makes the fast reader decline, and the careful reader
then names the fault or, for input that is merely unusual, returns the same arrays."""

import io
import mmap
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from kpbench.data.kaggle_format import IMAGE_SIZE, PIXELS

ROWS_PER_CHUNK = 16  # ≈ 0.55 MB of pixel text; 16-32 rows measured fastest (work arrays about L2-sized)
_GAP = np.uint8(250)  # marks bytes outside the Image fields: neither a digit nor a space once shifted
_SPACE = np.uint8(32 + 256 - 48)  # a space after the shift by -48 (wraps around)


def read_fast(path, columns):
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

