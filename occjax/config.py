"""`InvertConfig` and the approach presets (the paper's Table III names).

| preset      | what it optimises (Adam, lr 0.01, 100 steps, from the encoder's code)                 |
|-------------|------------------------------------------------------------------------------------------|
| enc         | nothing: the encoder's code E(x)                                                         |
| baseline    | idinvert: 1 * reconstruction + 5e-5 * perceptual + 2.0 * encoder regulariser             |
| disc        | baseline + 0.1 * discriminator term (-D(G(z)))                                            |
| prior       | baseline + lambda3 * Gaussian prior, lambda3 = 2 sigmoid(0.25 (p - 13)), sigma 15         |
| prior_disc  | both                                                                                     |

Where the defaults deviate from the paper's code (see README): the mask excludes occluded pixels
(`mask_mode="visible"`; the paper's mask has no effect), the discriminator term is -D(G(z)) as in
its equation 6 (`disc_loss="neg_score"`; the code's softplus(D) pushes toward "fake"), and the
encoder regulariser keeps idinvert's 2.0 (the paper's code sets 0 for occluded photos).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from occjax.losses import DISC_LOSSES, MASK_MODES, PRIOR_NORMS

APPROACHES = ("enc", "baseline", "disc", "prior", "prior_disc")
# run only when asked for by name (not in the CLI demo's default set): occjax.personal tunes the
# generator's weights per problem (`occjax.personal.PersonalConfig`, `personal_config(models)`)
OPT_IN_APPROACHES = ("personal",)
COMPUTE_DTYPES = ("float32", "bfloat16", "float64")
INITS = ("auto", "encoder", "w_avg", "mapped")


@dataclass(frozen=True)
class InvertConfig:
    approach: str = "baseline"
    """Preset name this config came from (informational once fields are overridden)."""
    steps: int = 100
    """Adam steps on the W+ code (0: the encoder's code as is)."""
    lr: float = 0.01
    """Adam learning rate (torch defaults otherwise: betas 0.9/0.999, eps 1e-8)."""
    reconstruction_weight: float = 1.0
    """lambda1: pixel mean squared error."""
    perceptual_weight: float = 5e-5
    """lambda2: the perceptual network's distance between the reconstruction and the target (idinvert's
    VGG16: relu(conv4_3) feature mean squared error; faces64: LPIPS-VGG)."""
    encoder_reg_weight: float = 2.0
    """idinvert's domain regulariser mean((z - E(G(z)))^2) (the paper's code uses 0 for occluded photos)."""
    discriminator_weight: float = 0.0
    """lambda4: weight of the discriminator term (0: D is not evaluated)."""
    prior: bool = False
    """Use the Gaussian prior over the references' codes."""
    prior_weight: float | None = None
    """Fixed lambda3 for the prior; None: adaptive 2 * sigmoid(scale * (occluded% - shift))."""
    sigma: float = 15.0
    """Gaussian prior width: -sum_i exp(-||z_ref_i - z|| / (2 sigma^2))."""
    scale: float = 0.25
    """k of the adaptive prior weight."""
    shift: float = 13.0
    """x0 of the adaptive prior weight, in occluded percent."""
    prior_norm: Literal["whole", "per_layer"] = "per_layer"
    """'per_layer': one norm per W+ layer, summed (the paper's code, with which sigma was tuned);
    'whole': one norm over the whole code (equation 5 as written)."""
    mask_mode: Literal["visible", "none", "visible_all", "robust"] = "visible"
    """'visible': occluded pixels excluded from reconstruction and perceptual terms; 'none': whole
    image (the paper's equations and, effectively, its code); 'visible_all': idinvert diffuse;
    'robust': RGI's robust cost (what `occjax.estimate_mask` inverts with, no mask needed; with a
    mask, over its visible pixels)."""
    robust_delta: float = 0.25
    """'robust' mask mode: residual length (over RGB in [-1, 1]) beyond which a pixel is an outlier."""
    disc_loss: Literal["neg_score", "softplus_neg", "paper_code"] = "neg_score"
    """'neg_score': -D(G(z)) (equation 6); 'softplus_neg': softplus(-D); 'paper_code': softplus(D)."""
    occlusion_measure: Literal["box", "image"] = "box"
    """Occluded percentage for lambda3: inside the paper's 170x170 box (its code) or the whole image."""
    reference_steps: int = 100
    """Steps of the baseline inversion that turns each reference photo into its code."""
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    compute_dtype: Literal["float32", "bfloat16", "float64"] = "float32"
    """Networks' weights and activations inside the step. With bfloat16 (for GPUs: twice the matmul
    rate; XLA:CPU runs it slower than float32) codes, Adam state and every loss sum stay float32;
    float64 (verification against references; needs `jax.enable_x64`) makes all of them float64."""
    init: Literal["auto", "encoder", "w_avg", "mapped"] = "auto"
    """Where the codes start (`occjax.starts`; `invert(init_codes=...)` overrides it): 'encoder':
    E(x); 'w_avg': the generator's mean code w_avg over W+ (NVlabs' projector); 'mapped': the best
    of the mean code and `init_samples` sampled codes (mapping of z ~ N(0, I), truncated by
    `init_psi`; a z-code generator such as the DCGAN: psi z), per target, by this config's weighted
    reconstruction and perceptual terms over the visible pixels; 'auto': the encoder where the model
    has one, else w_avg."""
    init_samples: int = 64
    """'mapped': how many sampled codes compete (besides the mean code)."""
    init_psi: float = 1.0
    """'mapped': truncation of the samples, w_avg + psi (w - w_avg) (1: none)."""
    init_seed: int = 0
    """'mapped': seed of the sampled z (the same candidates for every problem of this seed)."""
    noise_reg_weight: float = 0.0
    """> 0: the generator's per-layer noise maps are optimised with the codes, per problem, under
    NVlabs projector's multi-scale autocorrelation penalty at this weight (its default: 1e5), and
    renormalised to zero mean, unit variance after each step (`occjax.noise`); 0: the model's fixed
    noise. Generators without noise inputs (the DCGAN) refuse a nonzero weight."""

    def __post_init__(self):
        import math

        numbers = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, v in numbers.items():
            if isinstance(v, float | int) and not isinstance(v, bool) and not math.isfinite(v):
                raise ValueError(f"InvertConfig: {name} must be finite, got {v}")
        weights = ("reconstruction_weight", "perceptual_weight", "encoder_reg_weight")
        checks = [
            *((getattr(self, w) >= 0, f"{w} must be >= 0") for w in weights),
            (self.discriminator_weight >= 0, "discriminator_weight must be >= 0"),
            (0 <= self.beta1 < 1, f"beta1 must be in [0, 1), got {self.beta1}"),
            (0 <= self.beta2 < 1, f"beta2 must be in [0, 1), got {self.beta2}"),
            (self.eps > 0, f"eps must be > 0, got {self.eps}"),
            (self.robust_delta > 0, f"robust_delta must be > 0, got {self.robust_delta}"),
            (self.reference_steps >= 0, "reference_steps must be >= 0"),
            (self.mask_mode in MASK_MODES, f"mask_mode must be one of {MASK_MODES}"),
            (self.prior_norm in PRIOR_NORMS, f"prior_norm must be one of {PRIOR_NORMS}"),
            (self.disc_loss in DISC_LOSSES, f"disc_loss must be one of {DISC_LOSSES}"),
            (self.occlusion_measure in ("box", "image"), "occlusion_measure must be box or image"),
            (self.steps >= 0, "steps must be >= 0"),
            (self.sigma > 0, "sigma must be > 0"),
            (
                self.prior_weight is None or self.prior_weight >= 0,
                "prior_weight must be >= 0, or None for the adaptive weight",
            ),
            (self.lr > 0, "lr must be > 0"),
            (self.init in INITS, f"init must be one of {INITS}, got {self.init!r}"),
            (
                _is_int(self.init_samples) and self.init_samples >= 1,
                f"init_samples must be an int >= 1, got {self.init_samples!r}",
            ),
            (self.init_psi >= 0, f"init_psi must be >= 0, got {self.init_psi}"),
            (
                _is_int(self.init_seed) and self.init_seed >= 0,
                f"init_seed must be an int >= 0, got {self.init_seed!r}",
            ),
            (self.noise_reg_weight >= 0, "noise_reg_weight must be >= 0"),
            (
                self.compute_dtype in COMPUTE_DTYPES,
                f"compute_dtype must be one of {COMPUTE_DTYPES}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"InvertConfig: {msg}")

    @property
    def uses_discriminator(self) -> bool:
        return self.steps > 0 and self.discriminator_weight != 0

    @property
    def uses_prior(self) -> bool:
        return self.steps > 0 and self.prior

    @property
    def uses_references(self) -> bool:
        """The problem needs the person's references (a prior on their codes; PersonalConfig's
        is always True: it tunes on their pixels)."""
        return self.uses_prior

    @property
    def uses_noise(self) -> bool:
        """The generator's noise maps are optimised (a nonzero noise weight, and steps to take)."""
        return self.steps > 0 and self.noise_reg_weight > 0


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


PRESETS: dict[str, InvertConfig] = {
    "enc": InvertConfig(approach="enc", steps=0),
    "baseline": InvertConfig(approach="baseline"),
    "disc": InvertConfig(approach="disc", discriminator_weight=0.1),
    "prior": InvertConfig(approach="prior", prior=True),
    "prior_disc": InvertConfig(approach="prior_disc", prior=True, discriminator_weight=0.1),
}


def preset(name: str, **overrides) -> InvertConfig:
    """The named approach's config (a frozen dataclass), optionally with fields replaced."""
    if name not in PRESETS:
        raise ValueError(f"unknown approach {name!r}; choose one of {', '.join(APPROACHES)}")
    return dataclasses.replace(PRESETS[name], **overrides)
