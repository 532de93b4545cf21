"""Peer Mixup/CutMix implementations that ``fastmix bench`` compares fastmix with.

Each peer is built by a factory ``PEERS[name](x, y, num_classes)`` that returns a
zero-argument callable performing ONE mixing step on ``(x, y)`` the way a training
loop would call that library.  Use :func:`make` rather than the raw factories: it
also checks that the peer's library imports (``PeerMissing``) and that the peer
handles ``x``'s dtype / batch size correctly (``PeerUnsupported``).

:func:`count_traffic` (from :mod:`fastmix.apps.bench.traffic`) counts the bytes that the aten ops
of one call read and write. :func:`timm_collate` builds timm's ``FastCollateMixup``.

This module imports only ``torch`` at top level; timm, torchvision and kornia are
imported lazily inside the factories, so it imports without them.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import torch

from .traffic import count_traffic

__all__ = [
    "PEERS",
    "HOST_ROUND_TRIPS",
    "PeerMissing",
    "PeerUnsupported",
    "available",
    "make",
    "count_traffic",
    "timm_collate",
]


class PeerMissing(ImportError):
    """The peer's library cannot be imported here."""


class PeerUnsupported(TypeError):
    """The peer does not handle this input (dtype, batch size) correctly.

    Raised instead of converting the input behind the peer's back.
    """


# ---------------------------------------------------------------------------
# availability
# ---------------------------------------------------------------------------

# which importable module each peer needs (None: torch only)
_REQUIRES: Dict[str, Optional[str]] = {}
_IMPORT_CACHE: Dict[str, Optional[str]] = {}


def _import_reason(module: str) -> Optional[str]:
    """None if ``module`` imports, else a one-line reason."""
    if module not in _IMPORT_CACHE:
        try:
            __import__(module)
        except Exception as e:  # torchvision can fail with RuntimeError, not just ImportError
            text = str(e).strip().splitlines()
            _IMPORT_CACHE[module] = f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")
        else:
            _IMPORT_CACHE[module] = None
    return _IMPORT_CACHE[module]


def available() -> Dict[str, Optional[str]]:
    """name -> None if the peer is usable here, else a one-line reason it is missing."""
    return {name: (_import_reason(mod) if mod else None) for name, mod in _REQUIRES.items()}


# ---------------------------------------------------------------------------
# factories
# ---------------------------------------------------------------------------

PEERS: Dict[str, Callable[[torch.Tensor, torch.Tensor, int], Callable[[], object]]] = {}

# name -> {dtype: reason}: dtypes the peer rejects or gets wrong (found by reading the
# peer's code and checked by running it; see HOST_ROUND_TRIPS for where the code lives).
_DTYPE_LIMITS: Dict[str, Dict[torch.dtype, str]] = {}
_EVEN_BATCH: set = set()


def _register(name: str, module: Optional[str], *, unsupported=None, even_batch=False):
    def deco(factory):
        PEERS[name] = factory
        _REQUIRES[name] = module
        _DTYPE_LIMITS[name] = dict(unsupported or {})
        if even_batch:
            _EVEN_BATCH.add(name)
        return factory

    return deco


# --- hand-written loop ------------------------------------------------------

@_register("loop_mixup", None)
def _loop_mixup(x, y, num_classes):
    import torch.nn.functional as F

    beta = torch.distributions.Beta(1.0, 1.0)  # built once, as a training script would
    B = x.shape[0]

    def step():
        lam = beta.sample()  # 0-dim CPU tensor
        perm = torch.randperm(B)  # CPU index tensor
        xm = lam * x + (1 - lam) * x[perm]
        oh = F.one_hot(y, num_classes)
        ym = lam * oh + (1 - lam) * oh[perm]
        return xm, ym

    return step


# --- timm -------------------------------------------------------------------

_TIMM_ALPHAS = {
    "mixup": dict(mixup_alpha=1.0, cutmix_alpha=0.0),
    "cutmix": dict(mixup_alpha=0.0, cutmix_alpha=1.0),
    "switch": dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5),
}

_TIMM_UINT8_BATCH_MIX = (
    "timm Mixup._mix_batch does x.flip(0).mul_(1 - lam) in place: "
    "RuntimeError 'result type Float can't be cast to the desired output type Byte'"
)
_TIMM_UINT8_PER_SAMPLE = (
    "timm Mixup._mix_pair/_mix_elem returns torch.tensor(lam_batch, dtype=x.dtype): with uint8 "
    "every lam truncates to 0, so targets come back unmixed (silently wrong)"
)


def _timm_factory(kind: str, mode: str):
    def factory(x, y, num_classes):
        from timm.data import Mixup

        mixer = Mixup(
            **_TIMM_ALPHAS[kind],
            prob=1.0,
            mode=mode,
            label_smoothing=0.1,
            num_classes=num_classes,
        )
        return lambda: mixer(x, y)  # mutates x in place

    return factory


for _kind in ("mixup", "cutmix", "switch"):
    for _mode in ("batch", "pair", "elem"):
        if _mode == "batch":
            _unsup = {} if _kind == "cutmix" else {torch.uint8: _TIMM_UINT8_BATCH_MIX}
        else:
            _unsup = {torch.uint8: _TIMM_UINT8_PER_SAMPLE}
        _register(f"timm_{_kind}_{_mode}", "timm.data", unsupported=_unsup, even_batch=True)(
            _timm_factory(_kind, _mode)
        )
del _kind, _mode, _unsup


# --- torchvision ------------------------------------------------------------

@_register(
    "torchvision_mixup",
    "torchvision.transforms.v2",
    unsupported={
        torch.uint8: "torchvision MixUp.transform does inpt.roll(1, 0).mul_(1.0 - lam) in place: "
        "RuntimeError 'result type Float can't be cast to the desired output type Byte'"
    },
)
def _tv_mixup(x, y, num_classes):
    from torchvision.transforms import v2

    t = v2.MixUp(alpha=1.0, num_classes=num_classes)
    return lambda: t(x, y)


@_register("torchvision_cutmix", "torchvision.transforms.v2")
def _tv_cutmix(x, y, num_classes):
    from torchvision.transforms import v2

    t = v2.CutMix(alpha=1.0, num_classes=num_classes)
    return lambda: t(x, y)


# --- kornia -----------------------------------------------------------------

_KORNIA_UINT8 = (
    "kornia MixAugmentationBaseV2.transform_tensor accepts only float16/bfloat16/float32/float64: "
    "TypeError 'Expected input of [...]. Got torch.uint8'"
)


@_register("kornia_mixup", "kornia.augmentation", unsupported={torch.uint8: _KORNIA_UINT8})
def _kornia_mixup(x, y, num_classes):
    from kornia.augmentation import RandomMixUpV2

    # lambda ~ U(0, 1) == Beta(1, 1); labels come back as (B, 3): (y, y[perm], lam)
    aug = RandomMixUpV2(p=1.0, data_keys=["input", "class"])
    return lambda: aug(x, y)


@_register("kornia_cutmix", "kornia.augmentation", unsupported={torch.uint8: _KORNIA_UINT8})
def _kornia_cutmix(x, y, num_classes):
    from kornia.augmentation import RandomCutMixV2

    # beta=None -> Beta(1, 1); labels come back as (num_mix=1, B, 3): (y, y[perm], lam)
    # use_correct_lambda=True: lam = 1 - cut_area/area as in the paper (and no DeprecationWarning)
    aug = RandomCutMixV2(p=1.0, data_keys=["input", "class"], use_correct_lambda=True)
    return lambda: aug(x, y)


# ---------------------------------------------------------------------------
# make
# ---------------------------------------------------------------------------

def make(name: str, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> Callable[[], object]:
    """A zero-arg callable doing ONE mixing step of peer ``name`` on ``(x, y)``.

    The callable may mutate ``x`` in place (all timm modes do).  Raises KeyError for an
    unknown name, PeerMissing if the peer's library does not import, and PeerUnsupported
    if the peer rejects or silently mishandles ``x``'s dtype or batch size.
    """
    if name not in PEERS:
        raise KeyError(f"unknown peer {name!r}; known: {sorted(PEERS)}")
    mod = _REQUIRES[name]
    reason = _import_reason(mod) if mod else None
    if reason is not None:
        raise PeerMissing(f"{name}: {reason}")
    limit = _DTYPE_LIMITS[name].get(x.dtype)
    if limit is not None:
        raise PeerUnsupported(f"{name} with {x.dtype}: {limit}")
    if name in _EVEN_BATCH and x.shape[0] % 2:
        raise PeerUnsupported(f"{name}: timm Mixup.__call__ asserts an even batch size, got {x.shape[0]}")
    return PEERS[name](x, y, num_classes)


def timm_collate(**kwargs):
    """timm's ``FastCollateMixup(**kwargs)`` (a collate_fn), or PeerMissing where timm does not import."""
    reason = _import_reason("timm.data")
    if reason is not None:
        raise PeerMissing(f"timm FastCollateMixup: {reason}")
    from timm.data import FastCollateMixup

    return FastCollateMixup(**kwargs)


# ---------------------------------------------------------------------------
# host round trips, from reading each peer's code
# (timm 1.0.31, torchvision 0.29.1, kornia 0.9.0)
# ---------------------------------------------------------------------------

_TIMM_BATCH = (
    "timm/data/mixup.py Mixup._params_per_batch: lam from np.random.beta/np.random.rand on the host "
    "(a Python float passed to kernels, no device tensor built)"
)
_TIMM_CUT = (
    "; cutmix box from numpy in rand_bbox/cutmix_bbox_and_lam, and x[:, :, yl:yh, xl:xh] = "
    "x.flip(0)[...] materialises a full flipped copy of x first"
)
_TIMM_PER_SAMPLE = (
    "timm/data/mixup.py Mixup._params_per_elem: per-sample lam (and cutmix flags) sampled with numpy on the "
    "host; {fn} then loops over the batch in Python ({n} small ops per sample, numpy rand_bbox per cutmix "
    "sample) and ends with torch.tensor(lam_batch, device=x.device), a host-built tensor copied to the device"
)

HOST_ROUND_TRIPS: Dict[str, str] = {
    "loop_mixup": (
        "fastmix/apps/bench/peers.py _loop_mixup: lam = torch.distributions.Beta(1.0, 1.0).sample() and "
        "torch.randperm(B) are made on the host (CPU tensors); lam enters device kernels as a CPU scalar "
        "and x[perm] / oh[perm] copy the host-built index to the device"
    ),
    "timm_mixup_batch": _TIMM_BATCH,
    "timm_cutmix_batch": _TIMM_BATCH + _TIMM_CUT,
    "timm_switch_batch": _TIMM_BATCH + "; the switch is np.random.rand() < switch_prob" + _TIMM_CUT,
    "timm_mixup_pair": _TIMM_PER_SAMPLE.format(fn="Mixup._mix_pair", n="2 mixes"),
    "timm_cutmix_pair": _TIMM_PER_SAMPLE.format(fn="Mixup._mix_pair", n="2 slice copies"),
    "timm_switch_pair": _TIMM_PER_SAMPLE.format(fn="Mixup._mix_pair", n="2 mixes or 2 slice copies"),
    "timm_mixup_elem": _TIMM_PER_SAMPLE.format(fn="Mixup._mix_elem", n="1 mix"),
    "timm_cutmix_elem": _TIMM_PER_SAMPLE.format(fn="Mixup._mix_elem", n="1 slice copy"),
    "timm_switch_elem": _TIMM_PER_SAMPLE.format(fn="Mixup._mix_elem", n="1 mix or 1 slice copy"),
    "torchvision_mixup": (
        "torchvision/transforms/v2/_augment.py MixUp.make_params: lam = float(self._dist.sample(())) -- "
        "Beta built on CPU tensors in _BaseMixUpCutMix.__init__, so an .item() of a CPU tensor (no device "
        "sync); no host-built tensor is copied to the device"
    ),
    "torchvision_cutmix": (
        "torchvision/transforms/v2/_augment.py CutMix.make_params: lam = float(Beta.sample()) on CPU, "
        "r_x/r_y = torch.randint on CPU and four int(torch.clamp(...)) -> .item() of CPU tensors; box passed "
        "as Python ints, no host-built tensor copied to the device"
    ),
    "kornia_mixup": (
        "kornia/augmentation/random_generator/_2d/mixup.py MixupGenerator.forward samples mixup_pairs/"
        "lambdas on CPU; _2d/mix/base.py MixAugmentationBaseV2.forward/transform_input call "
        "params['dtype'].item() and bool(to_apply.any()) on CPU tensors and copy to_apply to the device; "
        "_2d/mix/mixup.py apply_transform/apply_transform_class copy mixup_pairs and mixup_lambdas to the "
        "device (_to_device_nonblocking); base.py transform_class tests sum(to_apply) == len(to_apply) with "
        "Python's builtin sum (B scalar adds + an .item())"
    ),
    "kornia_cutmix": (
        "kornia/augmentation/random_generator/_2d/cutmix.py CutmixGenerator.forward samples pairs and boxes "
        "on CPU; _2d/mix/cutmix.py RandomCutMixV2.apply_transform builds the (B, C, H, W) bool mask on CPU "
        "with geometry/bbox.py bbox_to_mask and indexes the device tensor with it (out[mask] = perm[mask]: "
        "host mask copied/nonzero'd), copies pairs to the device, and apply_transform_class calls "
        "params['dtype'].item(); base.py transform_class tests sum(to_apply) with Python's builtin sum "
        "(B scalar adds + an .item())"
    ),
}
