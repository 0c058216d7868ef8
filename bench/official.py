"""NVlabs' official StyleGAN3 generator, loaded from a local checkout, to time ours against it on the same weights.

    from bench.official import official_generator
    G_off = official_generator("/path/to/stylegan3", G)    # a clone of github.com/NVlabs/stylegan3
    G_off.synthesis(ws, noise_mode="const", force_fp32=True)

Nothing is downloaded: the caller names a checkout. Their files are imported unchanged. On CPU their ops run the
reference paths (`_init()`, which builds the CUDA plugins, is only reached for CUDA tensors), so no compiler is
needed. Two things are worked around, neither touching their files:

- `torch_utils/ops/conv2d_gradfix.py` imports `pkg_resources.parse_version`, and recent setuptools (84 here) no longer
  ships `pkg_resources`: if it is missing, a stand-in offering only `parse_version` (from `packaging`) is
  registered while their code is imported, then removed. Their `conv2d_gradfix.enabled` stays False (their
  default), so plain `torch.nn.functional.conv2d` runs.
- Their top-level packages are called `training`, `torch_utils` and `dnnlib`; tests/official_layout.py registers
  stand-ins under the last two names. Their import, and their constructors (each checks that it pickles by
  name), run with their modules under those names in `sys.modules`; whatever was there before is restored
  afterwards, so the official modules live only in this module's cache, keyed by checkout.

Only synthesis is meant to be compared. Our MappingNetwork's `normalize_z` is not an official kwarg: it is dropped
when building theirs, and their mapping always normalises z, so for a generator with `normalize_z=False` (the
shipped synthfaces one) `G_off.mapping` and `G_off(z)` differ from ours; a warning says so. Weights and buffers
are identical, so `G_off.synthesis(ws)` must match `G.synthesis(ws)` for any ws.
"""
from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
import warnings
from pathlib import Path
from typing import Iterator

import torch

_TOP_LEVEL = ("training", "torch_utils", "dnnlib")
_cache: dict[Path, dict[str, types.ModuleType]] = {}  # checkout -> its modules, by sys.modules name


def _theirs(name: str) -> bool:
    return any(name == top or name.startswith(top + ".") for top in _TOP_LEVEL)


@contextlib.contextmanager
def _official_modules(root: Path, modules: dict[str, types.ModuleType]) -> Iterator[None]:
    """Within: `root` on sys.path and `modules` (filled by any import made within) under their names; after, the
    names hold what they held before. Their constructors need this too: each checks that it pickles by name."""
    saved = {name: sys.modules.pop(name) for name in list(sys.modules) if _theirs(name)}
    stand_in = None
    if importlib.util.find_spec("pkg_resources") is None:
        from packaging.version import parse
        stand_in = sys.modules["pkg_resources"] = types.ModuleType("pkg_resources")
        stand_in.parse_version = parse  # type: ignore[attr-defined]
    sys.modules.update(modules)
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        if stand_in is not None and sys.modules.get("pkg_resources") is stand_in:
            del sys.modules["pkg_resources"]
        modules.update((name, sys.modules.pop(name)) for name in list(sys.modules) if _theirs(name))
        sys.modules.update(saved)


def load_official(checkout: str | Path) -> types.ModuleType:
    """Their `training.networks_stylegan3`, imported from `checkout` (a clone of NVlabs/stylegan3)."""
    root = Path(checkout).expanduser().resolve()
    if root not in _cache:
        needed = ["training/networks_stylegan3.py", "torch_utils/ops/filtered_lrelu.py", "dnnlib/__init__.py"]
        missing = [rel for rel in needed if not (root / rel).is_file()]
        if missing:
            raise FileNotFoundError(f"{root} is not a checkout of github.com/NVlabs/stylegan3: missing "
                                    f"{', '.join(missing)}")
        modules: dict[str, types.ModuleType] = {}
        with _official_modules(root, modules):
            try:
                importlib.import_module("training.networks_stylegan3")
            except ImportError as e:
                raise ImportError(f"importing training.networks_stylegan3 from {root} failed: {e} (their code "
                                  "needs numpy, scipy, requests and `distutils`, which setuptools provides)") from e
        _cache[root] = modules
    return _cache[root]["training.networks_stylegan3"]


def official_generator(checkout: str | Path, G_ours: torch.nn.Module) -> torch.nn.Module:
    """Their Generator built from our generator's `init_kwargs`, holding our weights, in eval mode without grads,
    on our generator's device. Raises KeyError naming any tensor that one state dict has and the other lacks."""
    networks = load_official(checkout)
    kwargs = dict(G_ours.init_kwargs)
    mapping_kwargs = dict(kwargs.pop("mapping_kwargs", None) or {})
    if not mapping_kwargs.pop("normalize_z", True):
        warnings.warn("our mapping has normalize_z=False but the official one always normalises z: compare "
                      "synthesis only", stacklevel=2)
    root = Path(checkout).expanduser().resolve()
    with _official_modules(root, _cache[root]):
        G = networks.Generator(mapping_kwargs=mapping_kwargs, **kwargs)
    result = G.load_state_dict(G_ours.state_dict(), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise KeyError(f"state dicts differ: official tensors not in ours: {result.missing_keys or 'none'}; "
                       f"ours not in official: {result.unexpected_keys or 'none'}")
    device = next(G_ours.parameters()).device
    return G.eval().requires_grad_(False).to(device)
