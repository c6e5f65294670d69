"""occjax: occlusion removal in face photos by GAN inversion, guided by reference photos, in JAX.

Public API (images are NCHW float32 RGB in [-1, 1] at this boundary):
    models = occjax.load_models(bundle="faces64")            # the built-in face model
    res = occjax.invert(models, targets, masks, references, config="prior")
    masks = occjax.estimate_mask(models, targets, references)
    photos = occjax.blend(res.images, targets, masks)          # put back into the photos
"""

from occjax.api import InvertResult, Trace, invert, invert_references
from occjax.blend import blend
from occjax.config import APPROACHES, PRESETS, InvertConfig, preset
from occjax.masks import MaskConfig, estimate_mask
from occjax.models import Models, Network, load_models
from occjax.personal import PersonalConfig, personalize, save_bundle
from occjax.screening import Screening, screen_references

__version__ = "0.2.0"

__all__ = [
    "APPROACHES",
    "PRESETS",
    "InvertConfig",
    "InvertResult",
    "MaskConfig",
    "PersonalConfig",
    "Models",
    "Network",
    "Screening",
    "Trace",
    "__version__",
    "blend",
    "estimate_mask",
    "invert",
    "invert_references",
    "load_models",
    "personalize",
    "preset",
    "save_bundle",
    "screen_references",
]
