"""check_preview.py PNG ROWS N CAMS: the picture of `tmixctl preview` for 28x28 one-channel
images (tiles of 84 px): its size is the grid's (ROWS rows; N sources; CAM columns when CAMS
is 1), the CAM tiles are coloured where the images are gray, each mixed tile is its masks'
blend of its warped sources (within 8-bit rounding), the columns differ, and each row has
its label line."""
import sys

import numpy as np
from PIL import Image

path, rows, n, cams = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
TILE, GAP, GROUP_GAP, TEXT = 84, 2, 8, 5 * 2 + 2 * 2
groups = 4 if cams else 3
width = groups * (n * TILE + (n - 1) * GAP + GROUP_GAP) + TILE
row_h = TILE + TEXT + GAP
img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255
if img.shape != (rows * row_h, width, 3):
    sys.exit(f"FAIL preview: {img.shape}, expected {(rows * row_h, width, 3)}")


def tile(r, group, k):
    x = group * (n * TILE + (n - 1) * GAP + GROUP_GAP) + k * (TILE + GAP)
    return img[r * row_h: r * row_h + TILE, x: x + TILE]


mixed_x = width - TILE
for r in range(rows):
    sources = [tile(r, 0, k) for k in range(n)]
    warped = [tile(r, groups - 2, k) for k in range(n)]
    masks = [tile(r, groups - 1, k)[..., 0] for k in range(n)]
    mixed = img[r * row_h: r * row_h + TILE, mixed_x: mixed_x + TILE]
    for t in sources + warped + [mixed]:  # one channel: gray, R = G = B
        if np.abs(t[..., 0] - t[..., 1]).max() > 0:
            sys.exit(f"FAIL preview: row {r}: a gray image tile is coloured")
    blend = sum(m[..., None] * w for m, w in zip(masks, warped))
    if np.abs(blend - mixed).max() > 3 / 255:
        sys.exit(f"FAIL preview: row {r}: the mixed tile is not the masks' blend of the warped "
                 f"sources (max error {np.abs(blend - mixed).max():.3f})")
    if np.abs(sum(masks) - 1).max() > 3 / 255:
        sys.exit(f"FAIL preview: row {r}: the masks do not sum to 1")
    if cams:
        heat = tile(r, 1, 0)
        if np.abs(heat[..., 0] - heat[..., 2]).max() < 0.2:
            sys.exit(f"FAIL preview: row {r}: the CAM tile is not a heat map")
    if all(np.abs(mixed - s).max() == 0 for s in sources):
        sys.exit(f"FAIL preview: row {r}: the mixed tile equals a source")
    label = img[r * row_h + TILE: (r + 1) * row_h, :]
    if (label > 0.99).sum() < 50:
        sys.exit(f"FAIL preview: row {r}: no label line")
print(f"PASS preview {path}")
