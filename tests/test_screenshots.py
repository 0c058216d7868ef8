"""tools.screenshots: the README's pictures are taken from the running suite, in a real browser."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tools.screenshots import chromium_path, take


def test_unknown_pages_are_refused_before_anything_starts(tmp_path):
    with pytest.raises(ValueError, match="unknown page"):
        take(["sliders", "gallery"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(chromium_path() is None, reason="needs a system Chromium; .ci/run installs it")
def test_the_sliders_picture_shows_the_whole_page_after_a_slider_moved(tmp_path):
    files = take(["sliders"], tmp_path)
    assert files == [tmp_path / "app_sliders.png"]
    shot = np.asarray(Image.open(files[0]).convert("RGB"))
    assert shot.shape[1] == 1280 and shot.shape[0] > 1000  # the whole page, not the 1000 px viewport
    assert shot.std() > 20  # a drawn page (faces, sliders), not a blank one
