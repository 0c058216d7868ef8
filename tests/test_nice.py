"""NICE: exact invertibility, identity/attribute split, mixing and interpolation semantics, checkpoints."""
from __future__ import annotations

import pytest
import torch

from core.checkpoints import CheckpointError, save_checkpoint
from core.nice import NICE


def randomised(dim=64, id_dim=24, layers=4) -> NICE:
    torch.manual_seed(0)
    model = NICE(dim, id_dim, layers, hidden=96, depth=2)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model


def test_inverse_of_forward_is_identity():
    model = randomised()
    w = torch.randn(256, 64) * 3
    code = model.encode(w)
    assert (code - w).abs().max() > 0.1  # the map is far from trivial
    assert (model.decode(code) - w).abs().max() < 1e-5
    ids, attrs = model(w)
    assert ids.shape == (256, 24) and attrs.shape == (256, 40)
    assert (model.inverse(ids, attrs) - w).abs().max() < 1e-5
    assert (model.encode(model.decode(code)) - code).abs().max() < 1e-4


def test_every_feature_is_updated_by_some_coupling():
    model = randomised(dim=10, id_dim=5, layers=2)
    w = torch.zeros(1, 10)
    for i in range(10):
        moved = w.clone()
        moved[0, i] = 1.0
        # changing any input changes more than that coordinate of the code (the halves talk to each other)
        assert ((model.encode(moved) - model.encode(w)).abs() > 1e-6).sum() > 1


def test_mixing_takes_identity_from_a_and_attributes_from_b():
    model = randomised()
    a, b = torch.randn(8, 64), torch.randn(8, 64)
    mixed = model.mix(a, b)
    ids, attrs = model(mixed)
    assert torch.allclose(ids, model(a)[0], atol=1e-4) and torch.allclose(attrs, model(b)[1], atol=1e-4)


def test_interpolation_moves_one_part_only():
    model = randomised()
    a, b = torch.randn(1, 64), torch.randn(1, 64)
    t = torch.linspace(0, 1, 5)
    strip = model.interpolate(a, b, t, "identity")
    assert torch.allclose(strip[0], a[0], atol=1e-4)
    ids, attrs = model(strip)
    assert torch.allclose(attrs, model(a)[1].expand(5, -1), atol=1e-4)
    assert torch.allclose(ids[-1], model(b)[0][0], atol=1e-4)
    strip = model.interpolate(a, b, t, "attributes")
    assert torch.allclose(model(strip)[0], model(a)[0].expand(5, -1), atol=1e-4)
    with pytest.raises(ValueError, match="identity"):
        model.interpolate(a, b, t, "pose")


def test_bad_shapes_and_configs():
    model = randomised()
    with pytest.raises(ValueError, match=r"\[batch, 64\]"):
        model(torch.randn(2, 63))
    with pytest.raises(ValueError, match="codes must be"):
        model.inverse(torch.randn(2, 20), torch.randn(2, 44))
    with pytest.raises(ValueError, match="id_dim"):
        NICE(64, 64)
    with pytest.raises(ValueError, match="two coupling"):
        NICE(64, 32, layers=1)


def test_checkpoint_round_trip(tmp_path):
    model = randomised()
    path = save_checkpoint(tmp_path / "nice", model.state_dict(), {"kind": "nice", "init_kwargs": model.init_kwargs})
    again = NICE.from_pretrained(path)
    w = torch.randn(4, 64)
    assert torch.equal(again.encode(w), model.encode(w))
    with pytest.raises(CheckpointError, match="not a 'nice'"):
        save_checkpoint(tmp_path / "other", model.state_dict(), {"kind": "vae", "init_kwargs": {}})
        NICE.from_pretrained(tmp_path / "other.safetensors")
