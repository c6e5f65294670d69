"""Occlusions out: synthetic occluders on aligned faces, their masks, sizes and covered regions.

`measure.occluded_percentage` is the paper's measure (box rows/cols 51..220 of 256 px); the size
bands small / medium / large are defined in `measure.SIZE_BANDS`. Only numpy and Pillow are needed.
"""

from occjax.occlusion.measure import (
    BOX_256,
    SIZE_BANDS,
    SIZES,
    binarize,
    box_slices,
    occluded_percentage,
    size_category,
)
from occjax.occlusion.occluders import (
    Occluder,
    hand_cutout,
    load_mask_textures,
    load_occluder,
    load_occluder_folder,
    mask_texture,
    paper_dataset_cutouts,
    starter_occluders,
)
from occjax.occlusion.regions import REGIONS, covered_regions, region_coverage, region_masks
from occjax.occlusion.synth import (
    Occlusion,
    OcclusionError,
    OcclusionMeta,
    SynthConfig,
    occlude,
    occlude_from_pool,
)

__all__ = [
    "BOX_256",
    "REGIONS",
    "SIZES",
    "SIZE_BANDS",
    "Occluder",
    "Occlusion",
    "OcclusionError",
    "OcclusionMeta",
    "SynthConfig",
    "binarize",
    "box_slices",
    "covered_regions",
    "hand_cutout",
    "load_mask_textures",
    "load_occluder",
    "load_occluder_folder",
    "mask_texture",
    "occlude",
    "occlude_from_pool",
    "occluded_percentage",
    "paper_dataset_cutouts",
    "region_coverage",
    "region_masks",
    "size_category",
    "starter_occluders",
]
