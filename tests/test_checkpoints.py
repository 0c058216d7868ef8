"""One checkpoint format: round trips exactly, and every kind of bad file fails with a message that says why."""
from __future__ import annotations

import json

import pytest
import torch

from core.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from core.stylegan3 import Generator


def _save(G, path):
    return save_checkpoint(path, G.state_dict(), {"kind": "stylegan3", "init_kwargs": G.init_kwargs})


def test_round_trip_gives_identical_images(tmp_path, tiny_generator):
    path = _save(tiny_generator, tmp_path / "g")
    assert path.suffix == ".safetensors" and path.with_suffix(".json").is_file()
    loaded = Generator.from_pretrained(path)
    z = tiny_generator.z_from_seed(11, batch=2)
    with torch.no_grad():
        assert torch.equal(loaded(z, truncation_psi=0.6), tiny_generator(z, truncation_psi=0.6))
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temp files


def test_truncated_file_fails_clearly(tmp_path, tiny_generator):
    path = _save(tiny_generator, tmp_path / "g")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        Generator.from_pretrained(path)


def test_wrong_architecture_names_mismatched_tensors(tmp_path, tiny_generator):
    path = _save(tiny_generator, tmp_path / "g")
    config = json.loads(path.with_suffix(".json").read_text())
    config["init_kwargs"]["channel_max"] = 16
    path.with_suffix(".json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"shape mismatch \(\d+\): .*weight: file \[32, ") as e:
        Generator.from_pretrained(path)
    assert "Generator" in str(e.value)


def test_missing_and_unexpected_tensors_are_named(tmp_path, tiny_generator):
    state = tiny_generator.state_dict()
    state.pop("mapping.w_avg")
    state["extra.tensor"] = torch.zeros(3)
    path = save_checkpoint(tmp_path / "g", state, {"kind": "stylegan3", "init_kwargs": tiny_generator.init_kwargs})
    with pytest.raises(CheckpointError) as e:
        Generator.from_pretrained(path)
    assert "missing (1): mapping.w_avg" in str(e.value)
    assert "unexpected (1): extra.tensor" in str(e.value)


def test_nan_weights_are_refused(tmp_path, tiny_generator):
    state = tiny_generator.state_dict()
    state["mapping.fc0.weight"][0, 0] = float("nan")
    path = save_checkpoint(tmp_path / "g", state, {"kind": "stylegan3", "init_kwargs": tiny_generator.init_kwargs})
    with pytest.raises(CheckpointError, match="non-finite.*mapping.fc0.weight"):
        Generator.from_pretrained(path)


def test_unknown_name_lists_what_exists(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at 'no-such-model'.*embedded checkpoints"):
        Generator.from_pretrained("no-such-model")


def test_wrong_kind_and_missing_config(tmp_path, tiny_generator):
    path = save_checkpoint(tmp_path / "v", tiny_generator.state_dict(), {"kind": "vae", "init_kwargs": {}})
    with pytest.raises(CheckpointError, match="holds a 'vae' model, not a 'stylegan3'"):
        Generator.from_pretrained(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match="no config beside it"):
        load_checkpoint(path)
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)


def test_config_needs_kind(tmp_path, tiny_generator):
    with pytest.raises(ValueError, match="kind"):
        save_checkpoint(tmp_path / "g", tiny_generator.state_dict(), {"init_kwargs": {}})


def test_a_run_killed_between_tensors_and_config_resumes_from_the_previous_checkpoint(tmp_path):
    from core.train.rundir import RunDir
    run = RunDir.create(tmp_path / "r", {"name": "r"})
    run.save(10, {"x": torch.ones(2)}, {"kind": "test"})
    newer = run.save(20, {"x": torch.full((2,), 2.0)}, {"kind": "test"})
    newer.with_suffix(".json").unlink()  # as if SIGKILL landed after the tensors, before their config
    assert [p.stem for p in run.checkpoint_paths()] == ["00000010"]
    tensors, meta = run.latest()
    assert meta["step"] == 10 and torch.equal(tensors["x"], torch.ones(2))


def test_an_optimizer_saved_with_one_group_resumes_into_the_same_parameters_split_in_two():
    from core.train.rundir import load_optimizer_tensors, optimizer_tensors

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    one = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(3):
        one.zero_grad()
        net(torch.randn(5, 3)).square().sum().backward()
        one.step()
    tensors, meta = optimizer_tensors(one)
    two = torch.optim.Adam([{"params": net[0].parameters()}, {"params": net[1].parameters(), "lr": 0.5}], lr=0.01)
    load_optimizer_tensors(two, tensors, meta)
    assert [len(g["params"]) for g in two.param_groups] == [2, 2]
    for p in net.parameters():  # every parameter keeps its own moments and step count
        assert torch.equal(two.state[p]["exp_avg"], one.state[p]["exp_avg"])
        assert torch.equal(two.state[p]["exp_avg_sq"], one.state[p]["exp_avg_sq"])
        assert float(two.state[p]["step"]) == 3
    other = torch.optim.Adam(torch.nn.Linear(3, 4).parameters())  # different parameters: still refused
    with pytest.raises(ValueError):
        load_optimizer_tensors(other, tensors, meta)
