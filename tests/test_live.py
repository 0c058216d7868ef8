"""The live view's websocket (apps.live), on the sliders page of a tiny generator made here."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from fastapi import FastAPI
from PIL import Image
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from apps import latent_sliders, live
from apps.common import image_bytes
from core.directions import Editor, pca_directions, sample_w
from core.stylegan3 import Generator
from tests.conftest import tiny_kwargs


@pytest.fixture(scope="module")
def page():
    torch.manual_seed(0)
    G = Generator(**tiny_kwargs(resolution=32)).eval()
    editor = Editor(G, pca_directions(sample_w(G, 300), 2))
    faces = latent_sliders.UploadedFaces(None)  # holds encoded uploads by key; none yet
    demo = latent_sliders.build(editor, faces=faces, live=True)
    return editor, demo, TestClient(FastAPI(routes=live.routes())), faces


def request(ident: int, alpha: float, **changes) -> str:
    values = {"seed": 3, "psi": 0.7, "tx": 0, "ty": 0, "degrees": 0, "direction pca_0": alpha,
              "direction pca_1": 0.0, **changes}
    return json.dumps({"id": ident, "values": values, "face": ""})


def frame(data: bytes) -> tuple[int, np.ndarray]:
    return int.from_bytes(data[:4], "big"), np.asarray(Image.open(io.BytesIO(data[4:])).convert("RGB"))


def test_a_request_gets_the_exact_face_and_only_the_newest_of_a_burst_is_drawn(page):
    editor, demo, client, _ = page
    names = list(editor.dirs)
    with client.websocket_connect(f"/live/{demo.live_view.key}") as ws:
        ws.send_text(request(1, 0.5))
        ident, face = frame(ws.receive_bytes())
        assert ident == 1
        assert np.array_equal(face, latent_sliders.edit_image(editor, names, 3, 0.7, 0.5, 0.0))
        for i in range(2, 12):  # a fast drag: ten values before the first is drawn
            ws.send_text(request(i, i / 10))
        drawn = []
        while not drawn or drawn[-1][0] != 11:
            drawn.append(frame(ws.receive_bytes()))
        assert len(drawn) <= 4  # the stale values were dropped, not queued
        assert np.array_equal(drawn[-1][1], latent_sliders.edit_image(editor, names, 3, 0.7, 1.1, 0.0))


def test_an_upload_s_key_draws_its_face_not_the_seed_s(page):
    editor, demo, client, faces = page
    w = editor.G.mapping(torch.randn(1, editor.G.z_dim), truncation_psi=0.5)[:, 0]
    key = "f" * 40 + ":0"
    faces._done[key] = (w, "an upload, encoded")  # as UploadedFaces.w leaves it
    with client.websocket_connect(f"/live/{demo.live_view.key}") as ws:
        ws.send_text(json.dumps({"id": 9, "values": json.loads(request(9, 0.5))["values"], "face": key}))
        ident, face = frame(ws.receive_bytes())
    assert ident == 9
    assert np.array_equal(face, latent_sliders.edit_image(editor, list(editor.dirs), 3, 0.7, 0.5, 0.0, w=w))


def test_bad_requests_get_a_message_and_the_socket_stays_open(page):
    editor, demo, client, _ = page
    with client.websocket_connect(f"/live/{demo.live_view.key}") as ws:
        ws.send_text(request(4, 99.0))
        reply = json.loads(ws.receive_text())
        assert reply["id"] == 4 and "pca_0 must be a number from -3 to 3, got 99" in reply["error"]
        ws.send_text(request(5, 0.0, seed="x" * 10_000))
        reply = json.loads(ws.receive_text())
        assert reply["id"] == 5 and "seed" in reply["error"] and len(reply["error"]) < 200
        ws.send_text("not json")
        assert "a live request is" in json.loads(ws.receive_text())["error"]
        ws.send_text(json.dumps({"id": 6, "values": {}, "face": "0" * 40 + ":0"}))
        assert "no longer held" in json.loads(ws.receive_text())["error"]
        ws.send_text(request(7, 0.0))
        assert frame(ws.receive_bytes())[0] == 7


def test_the_socket_refuses_other_sites_unknown_pages_and_huge_messages(page):
    editor, demo, client, _ = page
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect(f"/live/{demo.live_view.key}", headers={"origin": "http://evil.example"}):
            pass
    assert refused.value.code == 4403
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/live/0123456789abcdef"):
            pass
    assert refused.value.code == 4404
    with client.websocket_connect(f"/live/{demo.live_view.key}") as ws:
        ws.send_text("[" * (live.MAX_MESSAGE + 1))
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 1009


def test_without_a_live_view_the_sliders_update_through_gradio_on_every_change(page):
    editor = page[0]
    config = latent_sliders.build(editor, live=False).get_config_file()
    edit = next(d for d in config["dependencies"] if d.get("api_name") == "edit")
    assert [t[1] for t in edit["targets"]] == ["change"]
    config = page[1].get_config_file()
    edit = next(d for d in config["dependencies"] if d.get("api_name") == "edit")
    assert [t[1] for t in edit["targets"]] == ["release"]


def test_frames_follow_the_page_s_image_rule_png_up_to_256_px_jpeg_above():
    rng = np.random.default_rng(0)
    faces = {"small": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
             "large": (np.linspace(20, 220, 512)[:, None, None] + rng.normal(0, 6, (512, 512, 3))).astype(np.uint8)}
    view = live.LiveView(lambda values, face: faces[values["size"]], ["size"])
    small, large = view.frame({"values": {"size": "small"}}), view.frame({"values": {"size": "large"}})
    assert small.startswith(b"\x89PNG") and np.array_equal(np.asarray(Image.open(io.BytesIO(small))), faces["small"])
    assert large.startswith(b"\xff\xd8") and Image.open(io.BytesIO(large)).size == (512, 512)
    assert len(large) < len(image_bytes(faces["large"], "png"))  # a photo-like face: far fewer bytes
