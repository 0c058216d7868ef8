"""SynthFaces: the embedded procedural face world with ground-truth identity and attribute factors."""
from core.synthfaces.factors import (ATTRIBUTE_FACTORS, FACTOR_NAMES, IDENTITY_FACTORS, NUM_FACTORS, FaceBatch,
                                     factor_index, sample_factors)
from core.synthfaces.render import LANDMARK_NAMES, NUM_LANDMARKS, render, render_faces

__all__ = ["ATTRIBUTE_FACTORS", "FACTOR_NAMES", "IDENTITY_FACTORS", "LANDMARK_NAMES", "NUM_FACTORS",
           "NUM_LANDMARKS", "FaceBatch", "factor_index", "render", "render_faces", "sample_factors"]
