"""Metrics: Fréchet distances, identity distance, DCI, VP."""
