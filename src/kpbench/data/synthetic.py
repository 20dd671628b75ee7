"""Deterministic synthetic faces in the exact schema of Kaggle's facial-keypoints CSVs.

Each face is drawn from its keypoints: the pupils sit on the eye centres, the eye corners end the
eyes, the eyebrows run between their two ends, the nostrils flank the nose tip and the lips span the
mouth corners. Faces vary in shape, position, scale, rotation, lighting, background and noise, and
the labels miss keypoints in the pattern of the real training set, its row order included (the fully
labelled rows first, the four-keypoint rows after), so the pipeline, the masked loss, the original
study's forward fill and the paper work unchanged on either. Unlike the real set, every keypoint's
true position is known, also where the CSV leaves it blank: it is written beside the CSVs
(truth.npz), never into them, to measure what forward fill invents.
"""

from pathlib import Path

import numpy as np

from kpbench.data.kaggle_format import (
    CORE_KEYPOINTS,
    IMAGE_SIZE,
    KEYPOINTS,
    LOOKUP_COLUMNS,
    TARGET_COLUMNS,
    TEST_COLUMNS,
    TRAINING_COLUMNS,
    TRUTH_FILE,
)

COMPLETE_SHARE = 2140 / 7049  # Kaggle: 2,140 of 7,049 rows carry all 15 keypoints
PARTIAL_SHARE = 0.02          # a few rows carry some of the other 11
CORE_DROP = {"left_eye_center": 0.0015, "right_eye_center": 0.002, "nose_tip": 0.0,
             "mouth_center_bottom_lip": 0.0045}
_CHUNK = 256
_INDEX = {name: i for i, name in enumerate(KEYPOINTS)}


def _faces(rng, n):
    """Per-face shape, pose and appearance parameters, each an (n, 1, 1) array for broadcasting."""
    def u(lo, hi):
        return rng.uniform(lo, hi, (n, 1, 1))

    def g(mean, sd, lo, hi):
        return np.clip(rng.normal(mean, sd, (n, 1, 1)), lo, hi)

    return {
        "eye_y": g(37.5, 1.5, 34, 41), "eye_dx": g(18.0, 1.3, 15, 21), "eye_w": g(7.0, 0.7, 5.5, 8.5),
        "brow_gap": g(8.0, 1.0, 6, 10.5), "brow_in": g(8.5, 1.2, 6, 11), "brow_out": g(12.0, 1.2, 9, 14),
        "nose_len": g(25.0, 2.0, 20, 29), "mouth_gap": g(13.5, 1.5, 10, 17), "mouth_w": g(15.0, 1.6, 11, 19),
        "lip_top": g(3.0, 0.6, 2, 4.5), "lip_bottom": g(3.8, 0.7, 2.5, 5.5),
        "face_w": g(31.0, 2.0, 27, 35), "face_h": g(41.0, 2.5, 36, 46),
        "scale": u(0.82, 1.08), "angle": g(0.0, np.radians(7), -np.radians(18), np.radians(18)),
        "shift_x": u(-5, 5), "shift_y": u(-4, 4),
        "skin": u(110, 200), "background": u(20, 235), "bg_slope_x": u(-0.8, 0.8),
        "bg_slope_y": u(-0.8, 0.8), "light": u(-0.5, 0.5), "hair": u(10, 90),
        "hair_line": u(0.45, 0.85), "lip_tone": u(0.45, 0.75), "noise": u(2, 9),
    }


def _canonical_keypoints(p):
    """Keypoints of each face in its own upright frame, (n, 15, 2)."""
    cx = 48.0
    ey, dx, ew = p["eye_y"], p["eye_dx"], p["eye_w"]
    by = ey - p["brow_gap"]
    ny = ey + p["nose_len"]
    my = ny + p["mouth_gap"]
    mw = p["mouth_w"]
    points = {
        "left_eye_center": (cx + dx, ey), "right_eye_center": (cx - dx, ey),
        "left_eye_inner_corner": (cx + dx - ew, ey), "left_eye_outer_corner": (cx + dx + ew, ey),
        "right_eye_inner_corner": (cx - dx + ew, ey), "right_eye_outer_corner": (cx - dx - ew, ey),
        "left_eyebrow_inner_end": (cx + dx - p["brow_in"], by),
        "left_eyebrow_outer_end": (cx + dx + p["brow_out"], by + 1.5),
        "right_eyebrow_inner_end": (cx - dx + p["brow_in"], by),
        "right_eyebrow_outer_end": (cx - dx - p["brow_out"], by + 1.5),
        "nose_tip": (cx + 0 * ny, ny),
        "mouth_left_corner": (cx + mw, my), "mouth_right_corner": (cx - mw, my),
        "mouth_center_top_lip": (cx + 0 * my, my - p["lip_top"]),
        "mouth_center_bottom_lip": (cx + 0 * my, my + p["lip_bottom"]),
    }
    xy = [np.broadcast_arrays(*points[name]) for name in KEYPOINTS]
    return np.stack([np.stack([x[:, 0, 0], y[:, 0, 0]], axis=-1) for x, y in xy], axis=1)


def _to_image(p, x, y):
    """Canonical face frame → image pixels: rotate and scale about the centre, then shift."""
    c, s = np.cos(p["angle"]), np.sin(p["angle"])
    x0, y0 = x - 48.0, y - 48.0
    return (48.0 + p["shift_x"] + p["scale"] * (c * x0 - s * y0),
            48.0 + p["shift_y"] + p["scale"] * (s * x0 + c * y0))


def _to_face(p, u, v):
    """Image pixels → canonical face frame (the inverse of _to_image), to shade each pixel."""
    c, s = np.cos(p["angle"]), np.sin(p["angle"])
    u0 = (u - 48.0 - p["shift_x"]) / p["scale"]
    v0 = (v - 48.0 - p["shift_y"]) / p["scale"]
    return 48.0 + c * u0 + s * v0, 48.0 - s * u0 + c * v0


def _inside(distance, softness=0.8):
    """Soft indicator of a shape from a signed distance (negative inside), anti-aliased."""
    return 1.0 / (1.0 + np.exp(np.clip(distance / softness, -30, 30)))


def _ellipse(x, y, cx, cy, ax, ay):
    radius = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
    return _inside((radius - 1.0) * np.minimum(ax, ay))


def _segment(x, y, x1, y1, x2, y2, half_width):
    dx, dy = x2 - x1, y2 - y1
    t = np.clip(((x - x1) * dx + (y - y1) * dy) / (dx * dx + dy * dy), 0, 1)
    return _inside(np.hypot(x - x1 - t * dx, y - y1 - t * dy) - half_width)


def _render(p, k, rng):
    """Draw faces whose features are placed at canonical keypoints `k` (n, 15, 2); uint8 images."""
    n = k.shape[0]
    grid = np.arange(IMAGE_SIZE, dtype=np.float64) + 0.5
    u, v = grid[np.newaxis, np.newaxis, :], grid[np.newaxis, :, np.newaxis]
    x, y = _to_face(p, u, v)

    def kp(name):
        i = _INDEX[name]
        return k[:, i, 0][:, None, None], k[:, i, 1][:, None, None]

    image = p["background"] + p["bg_slope_x"] * (u - 48) + p["bg_slope_y"] * (v - 48)
    face_cy = (kp("left_eye_center")[1] + kp("mouth_center_bottom_lip")[1]) / 2 + 2
    face = _ellipse(x, y, 48.0, face_cy, p["face_w"], p["face_h"])
    shade = p["skin"] * (1 + p["light"] * (x - 48) / 48)
    image = image * (1 - face) + shade * face
    hair = face * _inside(y - (face_cy - p["face_h"] * p["hair_line"]), 2.0)
    image = image * (1 - hair) + p["hair"] * hair
    for side in ("left", "right"):
        ex, ey = kp(f"{side}_eye_center")
        ix, _ = kp(f"{side}_eye_inner_corner")
        ox, _ = kp(f"{side}_eye_outer_corner")
        half = np.abs(ox - ix) / 2
        sclera = _ellipse(x, y, (ix + ox) / 2, ey, half, half * 0.45)
        image = image * (1 - sclera) + np.maximum(shade * 1.25, 200) * sclera
        iris = _ellipse(x, y, ex, ey, half * 0.38, half * 0.38) * sclera
        image = image * (1 - iris) + 45 * iris
        bx1, by1 = kp(f"{side}_eyebrow_inner_end")
        bx2, by2 = kp(f"{side}_eyebrow_outer_end")
        brow = _segment(x, y, bx1, by1, bx2, by2, 1.4)
        image = image * (1 - brow) + p["hair"] * brow
    nx, ny = kp("nose_tip")
    ridge = _segment(x, y, nx, ny - 14, nx, ny - 2, 0.9) * 0.35
    image = image * (1 - ridge) + shade * 0.7 * ridge
    for offset in (-4.0, 4.0):
        nostril = _ellipse(x, y, nx + offset, ny + 1.5, 1.7, 1.1)
        image = image * (1 - nostril) + shade * 0.45 * nostril
    tip = _ellipse(x, y, nx, ny, 2.2, 1.8) * 0.6
    image = image * (1 - tip) + np.minimum(shade * 1.2, 255) * tip
    lx, my = kp("mouth_left_corner")
    rx, _ = kp("mouth_right_corner")
    _, top = kp("mouth_center_top_lip")
    _, bottom = kp("mouth_center_bottom_lip")
    upper = _ellipse(x, y, (lx + rx) / 2, my, (lx - rx) / 2, np.maximum(my - top, 1.0)) * (y < my)
    lower = _ellipse(x, y, (lx + rx) / 2, my, (lx - rx) / 2, np.maximum(bottom - my, 1.0)) * (y >= my)
    lips = upper + lower
    image = image * (1 - lips) + shade * p["lip_tone"] * lips
    gap = _segment(x, y, rx, my, lx, my, 0.6)
    image = image * (1 - gap) + 30 * gap
    image = image + rng.normal(0.0, 1.0, (n, IMAGE_SIZE, IMAGE_SIZE)) * p["noise"]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def generate_faces(n, seed):
    """Images (n, 96, 96) uint8 and their keypoints in image pixels (n, 30) float64, deterministic."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for start in range(0, n, _CHUNK):
        p = _faces(rng, min(_CHUNK, n - start))
        k = _canonical_keypoints(p)
        images.append(_render(p, k, rng))
        ix, iy = _to_image(p, k[..., 0][..., None], k[..., 1][..., None])
        targets.append(np.stack([ix[..., 0], iy[..., 0]], axis=-1).reshape(len(k), -1))
    return np.concatenate(images), np.concatenate(targets)


def missing_label_mask(n, rng):
    """Which of the 15 keypoints each row carries, in the real training set's pattern and order.

    The real file holds its two labelling schemes in blocks: the fully labelled rows first, then the
    rows that carry the four core keypoints (a few of them some others too). The order matters to the
    original study's forward fill: after it, no label is left blank, and every later row inherits the
    last fully labelled face's other eleven keypoints."""
    present = np.zeros((n, len(KEYPOINTS)), dtype=bool)
    core = [_INDEX[name] for name in CORE_KEYPOINTS]
    n_complete = max(1, int(round(COMPLETE_SHARE * n)))
    n_partial = int(round(PARTIAL_SHARE * n))
    present[:n_complete] = True
    present[:, core] = True
    partial = slice(n_complete, n_complete + n_partial)
    present[partial] |= rng.random((len(present[partial]), len(KEYPOINTS))) < 0.5
    for name, share in CORE_DROP.items():
        present[n_complete:][rng.random(n - n_complete) < share, _INDEX[name]] = False
    return np.repeat(present, 2, axis=1)


_PIXEL_TEXT = np.array([str(i) for i in range(256)], dtype=object)


def _image_field(image):
    return " ".join(_PIXEL_TEXT[image.ravel()])


def _number_field(value):
    return f"{value:.10f}".rstrip("0").rstrip(".")


def write_synthetic_csvs(folder, n_train, n_test, seed):
    """Write training.csv, test.csv and IdLookupTable.csv exactly as Kaggle formats them, and beside
    them truth.npz: every training row's 30 true coordinates in pixels (row order as training.csv)."""
    folder = Path(folder)
    rng = np.random.default_rng([seed, 1])
    images, targets = generate_faces(n_train, seed=[seed, 2])
    mask = missing_label_mask(n_train, rng)
    with open(folder / "training.csv", "w", newline="") as out:
        out.write(",".join(TRAINING_COLUMNS) + "\n")
        for row in range(n_train):
            fields = [_number_field(v) if m else "" for v, m in zip(targets[row], mask[row])]
            out.write(",".join(fields) + "," + _image_field(images[row]) + "\n")
    with open(folder / TRUTH_FILE, "wb") as out:
        np.savez(out, keypoints=targets)
    test_images, _ = generate_faces(n_test, seed=[seed, 3])
    with open(folder / "test.csv", "w", newline="") as out:
        out.write(",".join(TEST_COLUMNS) + "\n")
        for row in range(n_test):
            out.write(f"{row + 1},{_image_field(test_images[row])}\n")
    # Kaggle asks for all 30 targets of some test images and the 8 core ones of the rest.
    core_columns = [c for c in TARGET_COLUMNS if c.rsplit("_", 1)[0] in CORE_KEYPOINTS]
    asks_all = rng.random(n_test) < COMPLETE_SHARE
    with open(folder / "IdLookupTable.csv", "w", newline="") as out:
        out.write(",".join(LOOKUP_COLUMNS) + "\n")
        row_id = 1
        for image_id in range(1, n_test + 1):
            for feature in TARGET_COLUMNS if asks_all[image_id - 1] else core_columns:
                out.write(f"{row_id},{image_id},{feature},\n")
                row_id += 1
