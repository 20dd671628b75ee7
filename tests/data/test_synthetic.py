import csv

import numpy as np
import pandas as pd

from kpbench.data.kaggle_format import (
    CORE_KEYPOINTS,
    KEYPOINTS,
    LOOKUP_COLUMNS,
    TARGET_COLUMNS,
    TEST_COLUMNS,
    TRAINING_COLUMNS,
)
from kpbench.data.synthetic import generate_faces, missing_label_mask, write_synthetic_csvs


def test_training_csv_has_kaggles_exact_header_and_fields(raw_dir):
    with open(raw_dir / "training.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == TRAINING_COLUMNS
    assert rows[0][:4] == ["left_eye_center_x", "left_eye_center_y", "right_eye_center_x", "right_eye_center_y"]
    assert rows[0][-1] == "Image"
    assert len(rows) == 61
    for row in rows[1:]:
        assert len(row) == 31
        pixels = row[-1].split(" ")
        assert len(pixels) == 96 * 96
        assert all(p.isdigit() and 0 <= int(p) <= 255 for p in pixels[:500])
        for value in row[:30]:
            if value:
                assert float(value) == float(f"{float(value):.10f}")


def test_test_and_lookup_files_follow_kaggles_schema(raw_dir):
    test = pd.read_csv(raw_dir / "test.csv")
    lookup = pd.read_csv(raw_dir / "IdLookupTable.csv")
    assert list(test.columns) == TEST_COLUMNS
    assert list(test["ImageId"]) == list(range(1, 7))
    assert list(lookup.columns) == LOOKUP_COLUMNS
    assert list(lookup["RowId"]) == list(range(1, len(lookup) + 1))
    assert set(lookup["FeatureName"]) <= set(TARGET_COLUMNS)
    assert lookup["Location"].isna().all()
    per_image = lookup.groupby("ImageId").size()
    assert set(per_image) <= {8, 30}


def test_generation_is_deterministic(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        write_synthetic_csvs(tmp_path / name, n_train=5, n_test=2, seed=99)
    for file in ("training.csv", "test.csv", "IdLookupTable.csv"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    images_a, _ = generate_faces(3, seed=1)
    images_b, _ = generate_faces(3, seed=2)
    assert not np.array_equal(images_a, images_b)


def test_keypoints_sit_on_the_drawn_features():
    images, targets = generate_faces(40, seed=4)
    assert targets.min() >= 0 and targets.max() <= 96
    for image, points in zip(images.astype(float), targets):
        xy = points.reshape(15, 2)
        def at(name):
            x, y = xy[KEYPOINTS.index(name)]
            return image[int(y), int(x)]
        face_level = np.median(image[30:70, 30:66])
        # The pupils are dark discs centred on the eye-centre keypoints.
        assert at("left_eye_center") < face_level - 20
        assert at("right_eye_center") < face_level - 20
        # Subject's left eye is on the image's right, as in Kaggle's data.
        assert xy[KEYPOINTS.index("left_eye_center"), 0] > xy[KEYPOINTS.index("right_eye_center"), 0]
        # The mouth lies below the nose, the nose below the eyes.
        assert xy[KEYPOINTS.index("mouth_center_bottom_lip"), 1] > xy[KEYPOINTS.index("nose_tip"), 1]
        assert xy[KEYPOINTS.index("nose_tip"), 1] > xy[KEYPOINTS.index("left_eye_center"), 1]


def test_missing_labels_follow_the_real_pattern():
    mask = missing_label_mask(5000, np.random.default_rng(0))
    present = mask[:, 0::2]
    core = [KEYPOINTS.index(k) for k in CORE_KEYPOINTS]
    core_only = present[:, core].all(axis=1) & (present.sum(axis=1) == 4)
    assert 0.62 < core_only.mean() < 0.75
    assert 0.25 < present.all(axis=1).mean() < 0.35
    assert present[:, KEYPOINTS.index("nose_tip")].all()
    assert np.array_equal(mask[:, 0::2], mask[:, 1::2])
