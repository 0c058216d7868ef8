"""The pickle converter reads official-layout pickles without running their code, and refuses anything else."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from core.checkpoints import CheckpointError
from core.stylegan3 import Generator
from core.stylegan3.convert import UnsafePickleError, convert_pickle, main
from tests.conftest import tiny_kwargs
from tests.official_layout import write_official_pickle


@pytest.mark.parametrize("cfg", ["stylegan3-t", "stylegan3-r"])
def test_converted_network_reproduces_the_original(tmp_path, cfg):
    torch.manual_seed(2)
    G = Generator(**tiny_kwargs(cfg)).eval()
    G.mapping.w_avg.normal_()
    for name in G.synthesis.layer_names:
        getattr(G.synthesis, name).magnitude_ema.fill_(float(torch.rand(1)) + 0.5)
    pkl = write_official_pickle(tmp_path / "network-snapshot.pkl", G)
    out = convert_pickle(pkl, tmp_path / "out", name="net")
    assert out.name == "net.safetensors"
    loaded = Generator.from_pretrained(out)
    assert loaded.init_kwargs == G.init_kwargs
    z = G.z_from_seed(5, batch=3)
    with torch.no_grad():
        assert torch.equal(loaded(z, truncation_psi=0.5), G(z, truncation_psi=0.5))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_code_in_the_pickle_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(pickle.dumps({"G_ema": _Payload(marker)}))
    with pytest.raises(UnsafePickleError, match=r"refusing to load global (posix|os)\.system"):
        convert_pickle(pkl, tmp_path / "out")
    assert not marker.exists()


def test_truncated_pickle_fails_clearly(tmp_path, tiny_generator):
    pkl = write_official_pickle(tmp_path / "n.pkl", tiny_generator)
    data = pkl.read_bytes()
    pkl.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        convert_pickle(pkl, tmp_path / "out")


def test_missing_network_key_and_non_stylegan3_source(tmp_path, tiny_generator):
    pkl = write_official_pickle(tmp_path / "n.pkl", tiny_generator)
    with pytest.raises(CheckpointError, match="no network 'G_foo'.*G_ema"):
        convert_pickle(pkl, tmp_path / "out", key="G_foo")
    sg2 = write_official_pickle(tmp_path / "sg2.pkl", tiny_generator, module_src="class SynthesisBlock: pass")
    with pytest.raises(CheckpointError, match="not a StyleGAN3 generator"):
        convert_pickle(sg2, tmp_path / "out")


def test_cli_reports_success_and_failure(tmp_path, tiny_generator, capsys):
    pkl = write_official_pickle(tmp_path / "n.pkl", tiny_generator)
    assert main([str(pkl), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "n.safetensors").is_file() and (tmp_path / "out" / "n.json").is_file()
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    assert main([str(tmp_path / "bad.pkl"), str(tmp_path / "out")]) == 1
    assert "error:" in capsys.readouterr().err
