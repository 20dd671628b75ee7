import json

import numpy as np

from kpbench.data.csv_reader import load_training_csv
from kpbench.data.kaggle_format import KEYPOINTS
from kpbench.data.preprocess import load_dataset, split_indices


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
