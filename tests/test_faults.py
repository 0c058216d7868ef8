"""Fault cases: damaged checkpoints, killed runs, bad files under a watched run, bad model sets and bad API input.
Each one must end in a clear message (or be survived), never in a silent wrong result or a raw traceback."""
from __future__ import annotations

import json
import time

import pytest
import torch

from core.checkpoints import CheckpointError, CorruptCheckpointError, load_checkpoint, load_pretrained, rehash
from core.stylegan3 import Generator


@pytest.fixture
def saved(tmp_path, tiny_generator):
    return tiny_generator.save_pretrained(tmp_path / "g")


def _flip(path, offset: int, count: int = 1) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("count", [1, 64])
def test_flipped_bytes_in_the_middle_are_detected(saved, count):
    _flip(saved, saved.stat().st_size // 2, count)
    with pytest.raises(CorruptCheckpointError, match="SHA-256"):
        Generator.from_pretrained(saved)
    with pytest.raises(CorruptCheckpointError):
        load_checkpoint(saved)


def test_swapped_same_shape_tensors_are_detected(tmp_path, tiny_generator):
    from safetensors.torch import load_file, save_file
    path = tiny_generator.save_pretrained(tmp_path / "g")
    state = load_file(str(path))
    by_shape: dict = {}
    for k, v in state.items():
        by_shape.setdefault((tuple(v.shape), v.dtype), []).append(k)
    a, b = next(ks[:2] for ks in by_shape.values() if len(ks) > 1 and not torch.equal(state[ks[0]], state[ks[1]]))
    state[a], state[b] = state[b], state[a]
    save_file(state, str(path))
    with pytest.raises(CorruptCheckpointError, match="SHA-256"):
        Generator.from_pretrained(path)


def test_another_dtype_is_refused_even_with_a_matching_hash(tmp_path, tiny_generator):
    from safetensors.torch import load_file, save_file
    path = tiny_generator.save_pretrained(tmp_path / "g")
    state = {k: v.double() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    save_file(state, str(path))
    rehash(path)  # someone "trusted" the converted file: the dtype check still refuses it
    with pytest.raises(CheckpointError, match=r"dtype mismatch .*torch.float64 vs model torch.float32"):
        Generator.from_pretrained(path)


def test_half_precision_storage_is_declared_and_loads(tmp_path, tiny_generator):
    path = tiny_generator.save_pretrained(tmp_path / "g", dtype=torch.float16)
    assert json.loads(path.with_suffix(".json").read_text())["storage_dtype"] == "float16"
    G = Generator.from_pretrained(path)
    assert G.mapping.fc0.weight.dtype == torch.float32
    assert torch.allclose(G.mapping.fc0.weight, tiny_generator.mapping.fc0.weight, rtol=2e-3, atol=1e-3)


def test_a_huge_config_fails_before_allocating(saved):
    config = json.loads(saved.with_suffix(".json").read_text())
    config["init_kwargs"]["w_dim"] = 4_000_000  # a real build would need hundreds of GB
    saved.with_suffix(".json").write_text(json.dumps(config))
    import resource
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.time()
    with pytest.raises(CheckpointError, match="w_dim.*outside"):
        Generator.from_pretrained(saved)
    assert time.time() - start < 30
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 2_000_000  # KiB: far below any real build


@pytest.mark.parametrize("where", ["num_layers", "mapping_kwargs.num_layers"])
def test_a_config_with_200000_layers_is_refused_at_once_without_memory(saved, where):
    """Building it, even on the meta device, took minutes and gigabytes; model sets from hf: load the same way."""
    import resource
    config = json.loads(saved.with_suffix(".json").read_text())
    target = config["init_kwargs"]
    for key in where.split(".")[:-1]:
        target = target.setdefault(key, {})
    target[where.split(".")[-1]] = 200_000
    saved.with_suffix(".json").write_text(json.dumps(config))
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.time()
    with pytest.raises(CheckpointError, match="num_layers.*outside 0..64"):
        load_pretrained(saved)
    assert time.time() - start < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


def _hostile(saved, kind: str):
    """A checkpoint whose safetensors header is a JSON string, or whose config names an unknown storage dtype."""
    import hashlib
    config = json.loads(saved.with_suffix(".json").read_text())
    if kind == "string header":
        header = json.dumps("not an object").encode()
        data = len(header).to_bytes(8, "little") + header
        saved.write_bytes(data)
        config["sha256"] = hashlib.sha256(data).hexdigest()
    else:
        config["storage_dtype"] = "complex_evil"
    saved.with_suffix(".json").write_text(json.dumps(config))
    return saved


@pytest.mark.parametrize("kind", ["string header", "unknown storage dtype"])
def test_hostile_headers_end_in_a_checkpoint_error(saved, kind):
    with pytest.raises(CheckpointError, match="not an object|storage_dtype"):
        load_pretrained(_hostile(saved, kind))


def test_a_hostile_checkpoint_disables_only_the_pages_that_need_it(tmp_path, monkeypatch):
    """The VAE lab's model is hostile; the app starts, that tab says why, the generator's tabs work."""
    import dataclasses
    import os

    import app
    from core import hub
    vae = hub.load("embedded", "vae")
    path = _hostile(vae.save_pretrained(tmp_path / "vae"), "unknown storage dtype")
    hostile = dataclasses.replace(hub.EMBEDDED.models["vae"], name=os.path.relpath(path.with_suffix(""),
                                                                                    hub.CHECKPOINT_DIR))
    monkeypatch.setattr(hub, "EMBEDDED", dataclasses.replace(hub.EMBEDDED, models={**hub.EMBEDDED.models,
                                                                                   "vae": hostile}))
    hub._load_frozen.cache_clear()
    try:
        config = app.build_app(models="embedded", device="cpu").get_config_file()
    finally:
        hub._load_frozen.cache_clear()
    texts = [c["props"].get("value", "") for c in config["components"] if c.get("type") == "markdown"]
    notes = [t for t in texts if "Not available" in t]
    assert len(notes) == 1 and "storage_dtype" in notes[0] and "VAE" in notes[0], notes
    assert str(tmp_path) not in notes[0]  # visitors never see the server's folders


def test_a_megabyte_bad_value_gets_a_short_answer():
    import gradio as gr

    from apps.common import as_number, parse_seeds
    huge = "9" * (8 * 1024 * 1024)
    for call in (lambda: as_number(huge, "seed", 0, 10, whole=True), lambda: parse_seeds(huge + ",x", "seeds", 4),
                 lambda: parse_seeds("1, " + "x" * 1_000_000, "seeds", 4)):
        with pytest.raises(gr.Error) as e:
            call()
        assert len(str(e.value)) < 200


def test_a_16_bit_grey_png_keeps_its_tones(tmp_path):
    import numpy as np
    from PIL import Image

    from core.imaging import read_image
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "grey16.png")
    array, notes = read_image(tmp_path / "grey16.png")
    assert array.shape == (64, 64, 3) and array[0, 0, 0] == 0 and array[-1, -1, 0] == 255
    assert 100 < array[32, 32, 0] < 160 and "16-bit" in notes[0]  # mid-grey, not all white


def test_a_write_killed_mid_checkpoint_leaves_no_orphan_after_resume(tmp_path):
    from core.train.rundir import RunConfig, TrainingRun
    cfg = RunConfig(name="r", runs_dir=str(tmp_path))
    with TrainingRun(cfg) as run:
        run.save(1, "test_training", {"m": torch.nn.Linear(2, 2)})
    orphan = tmp_path / "r" / "checkpoints" / ".00000002.safetensors.abc123.tmp"
    orphan.write_bytes(b"half a checkpoint")  # what a kill during the next write leaves
    with TrainingRun(cfg, resume=True) as run:
        assert run.step == 1
    assert not orphan.exists()


def test_training_command_mistakes_are_one_line_with_code_2(tmp_path, capsys):
    from core.train.__main__ import main
    (tmp_path / "broken.yaml").write_text("steps: [1,\n")
    for args, expected in ((["nice", "--set", "generator=no_such_model"], "no checkpoint at 'no_such_model'"),
                           (["vae", "--set", "dim_z=-3"], "dim_z"),
                           (["vae", "--config", str(tmp_path / "broken.yaml")], "not valid YAML"),
                           (["vae", "--set", "device=tpu"], "'device' must be one of")):
        assert main([*args, "--set", f"runs_dir={tmp_path}/runs"]) == 2, args  # no exception escapes
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1, (args, err[-500:])
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_verify_understands_run_checkpoints(tmp_path, capsys):
    from core.checkpoints import main
    from core.train.rundir import RunConfig, TrainingRun
    with TrainingRun(RunConfig(name="r", runs_dir=str(tmp_path))) as run:
        run.save(3, "nice_training", {"m": torch.nn.Linear(2, 2)})
    checkpoint = tmp_path / "r" / "checkpoints" / "00000003.safetensors"
    assert main(["verify", str(checkpoint)]) == 0
    assert "nice_training at step 3" in capsys.readouterr().out
    _flip(checkpoint, 100)
    assert main(["verify", str(checkpoint)]) == 2


def test_a_checkpoint_without_a_hash_says_how_to_add_one(saved):
    config = json.loads(saved.with_suffix(".json").read_text())
    config.pop("sha256")
    saved.with_suffix(".json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="rehash"):
        Generator.from_pretrained(saved)
    rehash(saved)
    Generator.from_pretrained(saved)


def test_every_shipped_checkpoint_records_and_matches_its_hash():
    from core.checkpoints import CHECKPOINT_DIR
    for path in sorted(CHECKPOINT_DIR.glob("*.safetensors")):
        config = json.loads(path.with_suffix(".json").read_text())
        assert len(config.get("sha256", "")) == 64, path.name
        if config["kind"] == "directions":
            load_checkpoint(path)
        else:
            model, _ = load_pretrained(path)
            assert model.kind == config["kind"]


def test_damaged_directions_fall_back_to_pca_with_a_note(tmp_path, tiny_generator):
    from core.directions import for_generator, pca_directions, sample_w, save_directions
    path = tiny_generator.save_pretrained(tmp_path / "g")
    dirs = pca_directions(sample_w(tiny_generator, 300), 2)
    saved = save_directions(tmp_path / "g_directions", dirs, "g")
    assert set(for_generator(tiny_generator, str(path))[0]) == {"pca_0", "pca_1"}
    from safetensors.torch import load_file, save_file
    tensors = load_file(str(saved))
    tensors["renamed"] = tensors.pop("pca_0")
    save_file(tensors, str(saved))
    rehash(saved)
    found, note = for_generator(tiny_generator, str(path))  # the app starts, showing PCA and saying why
    assert "no tensor for direction(s) pca_0" in note and "PCA" in note
    tensors = load_file(str(saved))
    tensors["pca_0"] = torch.full_like(tensors["renamed"], float("nan"))
    save_file(tensors, str(saved))
    rehash(saved)
    assert "non-finite" in for_generator(tiny_generator, str(path))[1]


def test_resume_before_the_first_checkpoint_logs_nothing_twice(tmp_path):
    from core.train.rundir import RunConfig, TrainingRun
    cfg = RunConfig(name="r", runs_dir=str(tmp_path))
    with TrainingRun(cfg) as run:  # killed before its first checkpoint: only metric lines were written
        for step in (1, 2, 3):
            run.log(step, loss=1.0)
    with open(tmp_path / "r" / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "lo')  # and a half-written last line
    with TrainingRun(cfg, resume=True) as run:
        assert run.step == 0
        for step in (1, 2):
            run.log(step, loss=0.5)
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2]  # whole lines only, each step once


def test_samples_and_status_are_written_atomically_and_the_monitor_reader_skips_bad_files(tmp_path):
    from core.imaging import save_grid
    from core.train.runs import MetricsTail, read_sample, run_status
    path = save_grid(torch.rand(4, 3, 8, 8), tmp_path / "samples" / "00000001.png", 2)
    assert read_sample(path) is not None and not list(path.parent.glob(".*tmp"))
    half = tmp_path / "samples" / "00000002.png"
    half.write_bytes(path.read_bytes()[:40])
    assert read_sample(half) is None
    for bad in ("[1, 2]", '{"state": "running", "step": "x"}', '{"state": 5}', "\xff\xfe"):
        (tmp_path / "status.json").write_text(bad, encoding="latin-1")
        status = run_status(tmp_path)
        assert status.state == "unknown" and ("malformed" in status.detail or "unreadable" in status.detail)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 1}\ngarbage\n[1]\n{"step": 2, "loss": 0.5}\n')
    tail = MetricsTail(tmp_path / "metrics.jsonl")
    assert tail.poll() == 2 and tail.bad_lines == 2


def test_hub_manifests_and_names_that_are_wrong_get_clear_messages(tmp_path, monkeypatch):
    from core import hub
    from tests.hub_server import FakeHub
    import huggingface_hub.constants as constants
    server = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    try:
        for manifest, message in (({"models": {"generator": {"filename": "g"}}}, "need a 'filename' and a 'kind'"),
                                  ({"models": ["generator"]}, "must hold a 'models' object"),
                                  ([1, 2], "must hold a 'models' object")):
            sha = server.commit("alice/bad", {hub.MANIFEST: json.dumps(manifest).encode()})
            with pytest.raises(hub.HubError, match=message):
                hub.model_set(f"hf:alice/bad@{sha}")
    finally:
        server.close()
    with pytest.raises(hub.HubError, match="not a valid Hub repository id"):
        hub.model_set("hf:../etc")


def test_numeric_api_inputs_name_the_field():
    import gradio as gr

    from apps.common import Number, Slider, as_number
    seed = Number(label="seed", precision=0, minimum=0, maximum=10)
    psi = Slider(0, 1.5, label="truncation ψ")
    for component, bad in ((seed, "abc"), (seed, None), (seed, float("nan")), (seed, 2.5), (psi, None),
                           (psi, "x"), (psi, 7), (psi, True)):
        with pytest.raises(gr.Error, match=f"{component.label} must be"):
            component.preprocess(bad)
    assert seed.preprocess(3) == 3 and psi.preprocess(0.7) == pytest.approx(0.7)
    assert seed.get_block_name() == "number" and psi.get_block_name() == "slider"  # the stock front ends
    with pytest.raises(gr.Error, match="steps must be a whole number"):
        as_number("3.5", "steps", 3, 12, whole=True)


def test_images_with_alpha_bombs_and_huge_files(tmp_path):
    import numpy as np
    from PIL import Image

    from core.imaging import MAX_IMAGE_BYTES, ImageInputError, read_image
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0], rgba[:16, :, 3], rgba[16:, :, 3] = 200, 0, 255
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    array, notes = read_image(tmp_path / "alpha.png")
    assert array[0, 0].tolist() == [255, 255, 255] and array[-1, 0].tolist() == [200, 0, 0] and notes
    Image.new("L", (12_000, 12_000)).save(tmp_path / "bomb.png", optimize=True)  # tiny file, 144 megapixels
    with pytest.raises(ImageInputError, match="too large|decompression bomb"):
        read_image(tmp_path / "bomb.png")
    with open(tmp_path / "huge.png", "wb") as f:
        f.truncate(MAX_IMAGE_BYTES + 1)
    with pytest.raises(ImageInputError, match="file is too large"):
        read_image(tmp_path / "huge.png")


def test_a_cancelled_vp_job_stops_computing_and_jobs_are_limited():
    import time

    from gradio_client import Client

    from apps import vp_metric
    from apps.common import JOBS
    vp_metric.RESULTS.clear()
    demo = vp_metric.build("embedded", "cpu")
    demo.queue().launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        job = client.submit("synthfaces", "paper", 1, api_name="/score")  # minutes of work
        deadline = time.time() + 60
        while not JOBS.running and time.time() < deadline:
            time.sleep(0.2)
        assert JOBS.running, "the job never started"
        second = client.submit("synthfaces", "fast", 2, api_name="/score")  # the same page, still busy
        with pytest.raises(Exception, match="Busy"):
            second.result(timeout=60)
        busy_cpu, deadline = time.process_time(), time.time() + 30
        while time.process_time() - busy_cpu <= 1.0 and time.time() < deadline:  # a loaded machine gives it less
            time.sleep(0.2)
        assert time.process_time() - busy_cpu > 1.0  # it is computing
        job.cancel()
        deadline = time.time() + 30
        while JOBS.running and time.time() < deadline:
            time.sleep(0.2)
        assert not JOBS.running, "the cancelled job still holds its slot"
        time.sleep(1)
        idle_cpu = time.process_time()
        time.sleep(3)
        assert time.process_time() - idle_cpu < 0.5  # the computation stopped with the cancel
    finally:
        demo.close()
