"""Latent Lab core library: generators, disentanglement models, metrics and training."""
