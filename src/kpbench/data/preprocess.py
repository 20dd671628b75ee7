"""Preprocessing: checked Kaggle CSVs → one .npz of masked float32 arrays with a deterministic
train/validation split, plus the statistics and sample faces the paper shows."""

from pathlib import Path

import numpy as np

from kpbench import KpbenchError
from kpbench.core.files import atomic_path, write_json
from kpbench.data.csv_reader import check_lookup_csv, load_test_csv, load_training_csv
from kpbench.data.kaggle_format import CORE_KEYPOINTS, IMAGE_SIZE, KEYPOINTS


def split_indices(n_rows, validation_fraction, seed):
    """Deterministic shuffled split: the same seed and size always give the same validation rows."""
    order = np.random.default_rng(seed).permutation(n_rows)
    n_val = max(1, int(round(validation_fraction * n_rows)))
    if n_val >= n_rows:
        raise KpbenchError(f"validation_fraction {validation_fraction} leaves no training rows "
                           f"out of {n_rows}")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def dataset_statistics(mask, n_train, n_val, n_test):
    """How complete the labels are, per keypoint and per row: the paper's data section reads these."""
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
    # Spread over the whole training split (the file keeps complete rows first), so the faces shown
    # carry complete and incomplete labels as the data does.
    samples = train_idx[np.linspace(0, len(train_idx) - 1, min(n_samples, len(train_idx))).round().astype(int)]
    with atomic_path(samples_path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, images=images[samples], targets=targets[samples],
                                mask=mask[samples])
    write_json(stats_path, stats)
    return stats


def load_dataset(path):
    """The arrays `preprocess` wrote, loaded into memory (the archive is closed on return)."""
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}
