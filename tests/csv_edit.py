"""Reading and editing Kaggle-format CSVs in tests, field by field."""

import csv


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def write_rows(path, rows):
    with open(path, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def set_field(path, line, column, value):
    """Set one field; `line` counts the header as line 1, as the error messages do."""
    rows = read_rows(path)
    rows[line - 1][rows[0].index(column)] = value
    write_rows(path, rows)
