"""Folder inference in its three modes on tiny folders made here, and the exports (video, GIF, zip)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.exports import save_video, sweep, zip_images
from core.imaging import to_pil
from core.infer import FolderInference, InferenceError, images_in, main, write_index
from core.synthfaces import render_faces


@pytest.fixture(scope="module")
def mixer():
    from core.mixing import FaceMixer
    return FaceMixer.load("embedded")


def faces(folder: Path, names: list[str], first: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    images = render_faces(torch.arange(first, first + len(names)), seed=first).images
    for name, image in zip(names, images):
        to_pil(image).save(folder / f"{name}.png")


def test_dirs_and_pairs_mix_every_usable_picture_and_say_what_they_skipped(mixer, tmp_path):
    faces(tmp_path / "ids", ["a", "b"], 100)
    faces(tmp_path / "attrs", ["a", "x"], 200)
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(tmp_path / "attrs" / "grey.png")  # no face
    (tmp_path / "attrs" / "broken.png").write_bytes(b"not a png")
    run = FolderInference(mixer, steps=4, progress=False)
    report = run.dirs(tmp_path / "ids", tmp_path / "attrs", tmp_path / "out")
    names = sorted(p.name for _, p in report.outputs)
    assert names == ["a__a.png", "a__x.png", "b__a.png", "b__x.png", "grid.png"]
    assert Image.open(tmp_path / "out" / "grid.png").size == (3 * 66 + 2, 3 * 66 + 2)  # donors on the edges
    why = {p.name: reason for p, reason in report.skipped}
    assert "no face" in why["grey.png"] and "not an image" in why["broken.png"]
    index = write_index(report, tmp_path / "out", "t").read_text()
    assert "grid.png" in index and "Skipped (2)" in index
    report = run.pairs(tmp_path / "ids", tmp_path / "attrs", tmp_path / "pairs")
    assert [p.name for _, p in report.outputs] == ["a.png"]  # only a matches by name
    unmatched = {p.name for p, reason in report.skipped if "no image named" in reason}
    assert unmatched == {"b.png", "x.png", "grey.png", "broken.png"}


def test_interpolate_writes_strips_gifs_and_videos(mixer, tmp_path):
    import cv2
    faces(tmp_path / "in" / "case1", ["id", "attr"], 300)
    (tmp_path / "in" / "lonely").mkdir()
    report = FolderInference(mixer, steps=4, progress=False).interpolate(tmp_path / "in", tmp_path / "out", 5)
    assert {p.name for _, p in report.outputs} == {"case1_identity.png", "case1_attributes.png"}
    assert [p.name for p, _ in report.skipped] == ["lonely"]
    video = cv2.VideoCapture(str(tmp_path / "out" / "case1_identity.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 5 + 3  # there and back: 5 + 3 frames
    assert Image.open(tmp_path / "out" / "case1_attributes.gif").n_frames == 8


def test_clear_messages_for_bad_folders(tmp_path, capsys):
    with pytest.raises(InferenceError, match="is not a folder"):
        images_in(tmp_path / "missing", "identity folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InferenceError, match="holds no images"):
        images_in(tmp_path / "empty", "identity folder")
    assert main(["dirs", "--id-dir", str(tmp_path / "empty"), "--attr-dir", str(tmp_path / "empty"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "holds no images" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pairs", "--out", str(tmp_path / "o")])  # needs --id-dir and --attr-dir


def test_exports_have_the_frames_asked_for(tmp_path):
    import cv2

    from core.directions import Editor, editor_from
    from core.models import load_models
    editor, _ = editor_from(load_models("embedded", Editor.ROLES, Editor.OPTIONAL))
    frames = sweep(editor, next(iter(editor.dirs)), seed=3, frames=6)
    assert frames.shape[0] == 6 and not torch.equal(frames[0], frames[-1])
    mp4 = save_video(frames, tmp_path / "s.mp4")
    video = cv2.VideoCapture(str(mp4))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 6 and video.get(cv2.CAP_PROP_FRAME_WIDTH) == 256
    assert Image.open(save_video(frames, tmp_path / "s.gif")).n_frames == 6
    with zipfile.ZipFile(zip_images({"a": frames[0], "b": frames[1]}, tmp_path / "g.zip")) as z:
        assert z.namelist() == ["a.png", "b.png"]
    with pytest.raises(ValueError, match="mp4 or .gif"):
        save_video(frames, tmp_path / "s.avi")
    with pytest.raises(ValueError, match="unknown direction"):
        sweep(editor, "nope", seed=1)


def test_the_sweep_command_refuses_a_file_it_cannot_write_before_drawing(tmp_path, capsys, monkeypatch):
    from core import exports
    monkeypatch.setattr(exports, "sweep", lambda *a, **k: pytest.fail("drew frames for a file it cannot write"))
    assert exports.main(["sweep", "--direction", "smile", "--out", str(tmp_path / "s.txt")]) == 2
    assert "mp4 or .gif" in capsys.readouterr().err and not list(tmp_path.iterdir())
