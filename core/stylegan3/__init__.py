"""StyleGAN3 generator in plain PyTorch, compatible with NVIDIA's official weights."""
from core.stylegan3.configs import CONFIG_NAMES, generator_kwargs
from core.stylegan3.networks import Generator, MappingNetwork, SynthesisNetwork

__all__ = ["CONFIG_NAMES", "Generator", "MappingNetwork", "SynthesisNetwork", "generator_kwargs"]
