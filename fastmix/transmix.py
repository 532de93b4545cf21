"""TransMix: the label weights of a box or mask mix, re-read from a ViT's class-token attention.

    grab = ClassTokenAttention(vit)          # a forward hook on the last block's attention
    relabel = TransMix(num_classes=1000, label_smoothing=0.1)
    for x, y in loader:
        plan = mixup_fn.plan(x)              # any Plan: Mixup/CutMix rows, SaliencyMix, FMix masks
        x = F.apply(x, plan)                 # in place
        out = vit(x)                         # grab.attention: (B, N_patches) float32
        soft = relabel(plan, y, grab.attention)

Chen et al., "TransMix: Attend to Mix for Vision Transformers" (CVPR 2022; Beckschen/TransMix).
For sample ``i`` with partner ``p_i`` (:class:`~fastmix.plan.Plan`'s notation):

- the partner's share of pixel ``(y, x)``: ``pi_i(y, x) = rho_i(y, x) * lam_partner_i`` inside the
  union of the row's boxes, 0 outside (``rho = plan.mask``, or 1 for a plan without one);
- the partner's share of patch ``P``, by ``patch_share``: ``"nearest"`` (the default, the
  official code's ``nn.Upsample(size=sqrt(N))`` of the pixel mask, whose nearest rule reads each
  patch's top-left pixel) ``pi_i(P) = pi_i(top-left pixel of P)``; ``"mean"`` the mean of
  ``pi_i`` over ``P``'s pixels (exact for boxes off the patch grid);
- with ``a_iP`` the class token's attention to patch ``P`` (last block, heads averaged)::

      lam_attn_i = 1 - sum_P a_iP * pi_i(P) / sum_P a_iP

  the official ``lam1 = w2 / (w1 + w2)`` (the partner's share of the attention over the patch
  tokens, the class token's own column left out), as the sample's own share;
- the label weight of the sample's own label::

      lam_i = (1 - attention_weight) * label_lam_i + attention_weight * lam_attn_i

  ``label_lam`` is the plan's area share (for CutMix the exact kept share of the clipped box, what
  the official code's ``lam0`` computes from the box). ``attention_weight=0.5`` (the default) is
  the official code, ``lam = (lam0 + lam1) / 2  # ... ratio=0.5`` in ``Mixup_transmix.transmix_label``;
  ``1.0`` is the paper's Eq. and Fig. 1, λ from the attention alone.

Only rows whose region is spatial (kind ``CUTMIX``: boxes, SaliencyMix, FMix masks) are relabelled,
as the official code relabels only CutMix batches. The others keep ``label_lam``: a Mixup row's
attention share is its pixel share λ whatever the attention, and a row of kind none or erase is
its own partner. A row whose attention has no mass over the patches keeps ``label_lam`` (rather
than 0 / 0). The soft target is fastmix's (timm's smoothing, :func:`fastmix.functional.targets`)::

    target_i = lam_i * smoothed(y_i) + (1 - lam_i) * smoothed(y_{p_i})

Nothing is read back to the host (every check is on shapes), so a CUDA step does not sync.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

import torch
from torch import nn

from . import _checks, ops
from .plan import CUTMIX, Plan

__all__ = ["TransMix", "ClassTokenAttention", "class_token_attention", "transmix_label_lam", "patch_grid",
           "PATCH_SHARES"]

PATCH_SHARES = ("nearest", "mean")


# --------------------------------------------------------------------------------------------
# the label weights
# --------------------------------------------------------------------------------------------

def _patch_size(patch_size) -> Optional[tuple[int, int]]:
    """``patch_size`` as ``(ph, pw)`` (an int is square), None for None; else an error naming it."""
    if patch_size is None:
        return None
    if _checks.is_number(patch_size):
        patch_size = (patch_size, patch_size)
    if not (isinstance(patch_size, (tuple, list)) and len(patch_size) == 2):
        raise TypeError(f"patch_size: expected an int or (ph, pw), got {patch_size!r}")
    return tuple(_checks.integer(f"patch_size[{k}]", v, low=1) for k, v in enumerate(patch_size))


def patch_grid(size: tuple[int, int], patches: int, patch_size=None) -> tuple[int, int]:
    """``(ph, pw)``: the patch of an ``H x W`` image cut into ``patches`` tokens.

    ``patch_size`` (an int or ``(ph, pw)``) must tile the image and give ``patches`` patches; without
    it the patches are the square ones that do (a ViT's, as the official code's ``sqrt(N)`` grid).
    A ValueError names ``patch_size`` or ``attention`` when nothing fits."""
    height, width = size
    patch_size = _patch_size(patch_size)
    if patch_size is not None:
        ph, pw = patch_size
        if height % ph or width % pw:
            raise ValueError(f"patch_size: {ph}x{pw} patches do not tile the {height}x{width} image")
        if (height // ph) * (width // pw) != patches:
            raise ValueError(f"attention: {patches} patch tokens, but a {height}x{width} image in {ph}x{pw} "
                             f"patches has {(height // ph) * (width // pw)}")
        return ph, pw
    side = math.isqrt(height * width // patches) if patches and (height * width) % patches == 0 else 0
    if side == 0 or side * side * patches != height * width or height % side or width % side:
        raise ValueError(f"attention: {patches} patch tokens do not tile the {height}x{width} image in square "
                         f"patches; pass patch_size, and the patch tokens only (no class token)")
    return side, side


def _check_attention(attention, plan: Plan) -> torch.Tensor:
    """``attention`` as ``(B, N)`` (heads averaged), or a TypeError/ValueError naming it."""
    if not isinstance(attention, torch.Tensor):
        raise TypeError(f"attention: expected a torch.Tensor, got {type(attention).__name__}")
    if not attention.dtype.is_floating_point:
        raise TypeError(f"attention: expected a floating-point tensor, got {attention.dtype}")
    if attention.dim() not in (2, 3) or attention.shape[0] != plan.batch_size or attention.shape[-1] == 0:
        raise ValueError(f"attention: expected (B, N_patches) or (B, heads, N_patches) with B = "
                         f"{plan.batch_size}, got shape {tuple(attention.shape)}")
    if attention.device != plan.device:
        raise ValueError(f"attention: on {attention.device}, but the plan is on {plan.device}")
    attention = attention.detach().float()
    return attention.mean(1) if attention.dim() == 3 else attention


def _partner_share(plan: Plan, patch: tuple[int, int], patch_share: str) -> torch.Tensor:
    """``(B, gh, gw)`` float32: the partner's share of each patch (the module docstring's ``pi``)."""
    height, width = plan.size
    ph, pw = patch
    device = plan.device
    if patch_share == "nearest":
        rows = torch.arange(0, height, ph, device=device)
        cols = torch.arange(0, width, pw, device=device)
    else:
        rows = torch.arange(height, device=device)
        cols = torch.arange(width, device=device)
    box = plan.box.long()
    in_rows = (rows >= box[..., 0, None]) & (rows < box[..., 1, None])                  # (B, N, rows)
    in_cols = (cols >= box[..., 2, None]) & (cols < box[..., 3, None])                  # (B, N, cols)
    share = (in_rows[..., :, None] & in_cols[..., None, :]).any(1).float()              # (B, rows, cols)
    if plan.mask is not None:
        share = share * plan.mask.float()[:, rows][:, :, cols]
    share = share * plan.lam_partner.float()[:, None, None]
    if patch_share == "mean":
        batch = share.shape[0]
        share = share.view(batch, height // ph, ph, width // pw, pw).mean((2, 4))
    return share


def transmix_label_lam(plan: Plan, attention: torch.Tensor, attention_weight: float = 0.5, patch_size=None,
                       patch_share: str = "nearest") -> torch.Tensor:
    """``(B,)`` float32: each sample's own label weight under TransMix (the module docstring's
    ``lam_i``), for ``attention`` ``(B, N)`` or ``(B, heads, N)`` over the patch tokens. Checks
    shapes only (no host sync); errors name the argument."""
    if not isinstance(plan, Plan):
        raise TypeError(f"plan: expected a fastmix Plan, got {type(plan).__name__}")
    attention_weight = _checks.number("attention_weight", attention_weight, low=0.0, high=1.0)
    if patch_share not in PATCH_SHARES:
        raise ValueError(f"patch_share: expected 'nearest' or 'mean', got {patch_share!r}")
    attention = _check_attention(attention, plan)
    if plan.size is None:          # no boxes: every row mixes whole samples (or not at all)
        return plan.label_lam.float()
    patch = patch_grid(plan.size, attention.shape[1], patch_size)
    share = _partner_share(plan, patch, patch_share).flatten(1)                         # (B, N)
    mass = attention.sum(1)
    lam_attn = 1.0 - (attention * share).sum(1) / torch.where(mass != 0, mass, 1.0)
    area = plan.label_lam.float()
    mixed = (1.0 - attention_weight) * area + attention_weight * lam_attn
    return torch.where((plan.kind == CUTMIX) & (mass != 0), mixed, area)


class TransMix:
    """The TransMix relabel step: ``soft = TransMix(num_classes=K)(plan, target, attention)``.

    Args:
        num_classes: classes ``K`` (needed for class-index targets).
        label_smoothing: timm's smoothing (off = s / K, on = 1 - s + off), as everywhere in fastmix.
        attention_weight: weight of the attention share in λ, in [0, 1]: 0.5 the official code
            (mean of the area and attention shares), 1.0 the paper (attention alone), 0 the plan's.
        patch_size: the ViT's patch (int or ``(ph, pw)``); default: the square patches that tile
            the plan's image into ``N`` tokens.
        patch_share: how a patch's partner share is read from the pixels: ``"nearest"`` (its
            top-left pixel, the official code) or ``"mean"`` (over its pixels).
        validate: check class indices are in range (default: on CPU tensors only: on CUDA a sync).

    ``__call__(plan, target, attention)``: ``plan`` the :class:`~fastmix.plan.Plan` the batch was
    mixed with; ``target`` class indices ``(B,)`` or soft labels ``(B, K)``; ``attention`` the class
    token's attention over the patch tokens after the forward, ``(B, N)`` or ``(B, heads, N)``
    (:class:`ClassTokenAttention` records it). Returns ``(B, K)`` float32 soft targets; the plan,
    the target and the attention are not written.
    """

    def __init__(self, num_classes: Optional[int] = None, label_smoothing: float = 0.0,
                 attention_weight: float = 0.5, patch_size=None, patch_share: str = "nearest",
                 validate: Optional[bool] = None):
        self.num_classes = None if num_classes is None else _checks.integer("num_classes", num_classes, low=1)
        self.label_smoothing = _checks.number("label_smoothing", label_smoothing, low=0.0, high=1.0,
                                              high_open=True)
        self.attention_weight = _checks.number("attention_weight", attention_weight, low=0.0, high=1.0)
        self.patch_size = _patch_size(patch_size)
        if patch_share not in PATCH_SHARES:
            raise ValueError(f"patch_share: expected 'nearest' or 'mean', got {patch_share!r}")
        self.patch_share = patch_share
        self.validate = validate

    def label_lam(self, plan: Plan, attention: torch.Tensor) -> torch.Tensor:
        """``(B,)`` float32: the own-label weights (:func:`transmix_label_lam` with this step's settings)."""
        return transmix_label_lam(plan, attention, self.attention_weight, self.patch_size, self.patch_share)

    def __call__(self, plan: Plan, target: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        from .functional import check_plan
        check_plan(plan)
        lam = self.label_lam(plan, attention)
        classes = _checks.labels("target", target, plan.batch_size, self.num_classes, plan.device,
                                 _checks.default_validate(self.validate, plan.device))
        # the targets read only partner and label_lam; the partner was checked above
        return ops.targets_of(target, replace(plan, label_lam=lam), classes, self.label_smoothing)


# --------------------------------------------------------------------------------------------
# the class token's attention, from a timm-style ViT with its fused attention left on
# --------------------------------------------------------------------------------------------

def class_token_attention(qkv: torch.Tensor, attn: nn.Module, num_prefix_tokens: int = 1) -> torch.Tensor:
    """``(B, N - num_prefix_tokens)`` float32: ``softmax(q k^T * scale)``'s class-token row (token
    0) over the patch tokens, heads averaged, from the output ``qkv`` ``(B, N, 3 * heads * head_dim)``
    of ``attn.qkv`` (timm's layout: ``reshape(B, N, 3, heads, head_dim)``), with ``attn.q_norm`` /
    ``attn.k_norm`` applied where ``attn`` has them and ``attn.scale`` (default ``head_dim ** -0.5``).
    One ``(B, heads, 1, N)`` product: the attention map itself is never formed."""
    heads = int(attn.num_heads)
    if qkv.dim() != 3:
        raise ValueError(f"attn.qkv: expected an output (B, N, 3 * dim), got shape {tuple(qkv.shape)}")
    batch, tokens, features = qkv.shape
    head_dim = int(getattr(attn, "head_dim", 0) or features // (3 * heads))
    if features != 3 * heads * head_dim:
        raise ValueError(f"attn.qkv: {features} output features, but 3 * num_heads * head_dim = "
                         f"{3 * heads * head_dim} (num_heads {heads}, head_dim {head_dim})")
    if not 1 <= num_prefix_tokens < tokens:
        raise ValueError(f"num_prefix_tokens: {num_prefix_tokens}, but a class token and at least one patch "
                         f"token are needed among the {tokens} tokens")
    parts = qkv.detach().reshape(batch, tokens, 3, heads, head_dim)
    q = parts[:, :1, 0].transpose(1, 2)                      # (B, heads, 1, D): the class token's query
    k = parts[:, :, 1].transpose(1, 2)                       # (B, heads, N, D)
    q_norm, k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
    if q_norm is not None:
        q = q_norm(q)
    if k_norm is not None:
        k = k_norm(k)
    scale = getattr(attn, "scale", None)
    scale = head_dim ** -0.5 if scale is None else float(scale)
    logits = torch.matmul((q * scale).float(), k.float().transpose(-2, -1))             # (B, heads, 1, N)
    return logits.softmax(-1)[:, :, 0, num_prefix_tokens:].mean(1)


def _attention_module(model: nn.Module) -> nn.Module:
    """The attention module to hook: ``model`` itself when it has ``qkv`` and ``num_heads``, else
    the ``attn`` of the last of ``model.blocks`` (timm's ViTs, DeiT, EVA...)."""
    if hasattr(model, "qkv") and hasattr(model, "num_heads"):
        return model
    blocks = getattr(model, "blocks", None)
    if blocks is not None and len(blocks) and hasattr(blocks[-1], "attn"):
        attn = blocks[-1].attn
        if hasattr(attn, "qkv") and hasattr(attn, "num_heads"):
            return attn
    raise ValueError(f"model: expected an attention module (with qkv and num_heads) or a ViT whose last "
                     f"blocks[-1].attn is one, got {type(model).__name__}")


class ClassTokenAttention:
    """A forward hook that records the class token's attention over the patch tokens.

    ``ClassTokenAttention(vit)`` hooks ``vit.blocks[-1].attn.qkv`` (or the given attention module's
    ``qkv``): after each forward, :attr:`attention` is ``(B, N_patches)`` float32, the last block's
    ``softmax(q k^T * scale)`` row of the class token, heads averaged, detached. It is recomputed
    from the projection's output (:func:`class_token_attention`: the class token's query against
    every key, one small product), so the model keeps its fused ``scaled_dot_product_attention``.
    Duck-typed on timm's ``Attention`` (``qkv``, ``num_heads``, ``head_dim``, ``scale``, ``q_norm``,
    ``k_norm``); timm is not imported. ``num_prefix_tokens``: the tokens before the patches, class
    token first (default ``vit.num_prefix_tokens``, timm's count of class and register tokens, else 1).
    A context manager; :meth:`remove` takes the hook off.
    """

    def __init__(self, model: nn.Module, num_prefix_tokens: Optional[int] = None):
        self.module = _attention_module(model)
        if num_prefix_tokens is None:
            num_prefix_tokens = getattr(model, "num_prefix_tokens", 1)
        self.num_prefix_tokens = _checks.integer("num_prefix_tokens", num_prefix_tokens, low=1)
        self.attention: Optional[torch.Tensor] = None
        self._handle = self.module.qkv.register_forward_hook(self._record)

    def _record(self, module: nn.Module, args, output: torch.Tensor) -> None:
        with torch.no_grad():
            self.attention = class_token_attention(output, self.module, self.num_prefix_tokens)

    def remove(self) -> None:
        self._handle.remove()

    def __enter__(self) -> "ClassTokenAttention":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
