"""Kaggle's facial-keypoints files, written down once: the readers check against these names and
sizes, and the synthetic source writes them, so the two can never drift apart."""

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
# The synthetic source's true keypoints, written beside its CSVs (kpbench.data.synthetic).
TRUTH_FILE = "truth.npz"
