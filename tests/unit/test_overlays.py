"""Kept-token overlays on a hand-built 2x2 grid."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vzexp.overlays import SCALE, overlay


def test_kept_bright_merged_tinted_dropped_dimmed():
    image = Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8))  # 2x2 patches of 4 px
    # CLS + 4 patches: patch 0 kept, patches 1 and 2 merged into contextual token 0, patch 3 dropped
    out = np.asarray(overlay(image, True, 5, index=[0, 1], groups=[-1, -1, 0, 0, -2]))
    assert out.shape == (8 * SCALE, 8 * SCALE, 3)
    centre = lambda r, c: out[r * 4 * SCALE + 8, c * 4 * SCALE + 8]  # noqa: E731
    assert centre(0, 0).tolist() == [200, 200, 200]  # kept: unchanged
    assert centre(0, 1).tolist() == centre(1, 0).tolist()  # same contextual group, same tint
    assert centre(0, 1).tolist() != [200, 200, 200]
    assert centre(1, 1).tolist() == [70, 70, 70]  # dropped: dimmed to 35%
    assert out[0, 0].tolist() == [255, 255, 255]  # the kept patch is outlined


def test_selection_only_strategies_need_no_groups():
    image = Image.fromarray(np.full((8, 8, 3), 100, dtype=np.uint8))
    out = np.asarray(overlay(image, False, 4, index=[3]))  # no CLS; patch 3 kept
    assert out[4 * SCALE + 8, 4 * SCALE + 8].tolist() == [100, 100, 100]
    assert out[8, 8].tolist() == [35, 35, 35]
