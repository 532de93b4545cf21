"""TransMix (``fastmix.transmix``): the relabel step and the class-token attention hook.

- label weights on hand-built plans, solved by hand (values on the 2**-k grid, so exact in
  float32): CutMix boxes on and off the patch grid, both patch rules, an FMix-style mask plan,
  Mixup rows and unmixed rows left alone, attention all on the sample's own patches, no mass;
- the same weights on sampled plans against an independent oracle: the partner's pixel share
  read back from applying the plan to a batch of one-hot "which sample" channels, then the
  official code's ``nn.Upsample`` (nearest) of that mask;
- the hook against the attention written out by hand on a tiny ViT with timm's module structure
  (``qkv``, ``num_heads``, ``head_dim``, ``scale``, ``q_norm``, ``k_norm``, fused attention on);
- errors naming the argument; no value read back to the host.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as nnf
from torch import nn

import fastmix
from fastmix import functional as F
from fastmix.family_masks import mask_plan
from fastmix.plan import CUTMIX, MIXUP, cutmix_plan, mixup_plan
from fastmix.transmix import ClassTokenAttention, TransMix, class_token_attention, transmix_label_lam

from test_family_on_device import NoReadBack

K = 10
FLIP2 = torch.tensor([1, 0])


def smoothed(labels: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    off = smoothing / K
    return nnf.one_hot(labels, K).float() * (1.0 - smoothing) + off


def expect_lam(got: torch.Tensor, want, what: str) -> None:
    want = torch.as_tensor(want, dtype=torch.float32)
    bad = (got != want).nonzero().flatten().tolist()
    assert not bad, f"{what}: sample {bad[0]} has label weight {float(got[bad[0]])}, expected {float(want[bad[0]])}"


# --------------------------------------------------------------------------------------------
# hand-solved plans: 4x4 images, 2x2 patches (a 2x2 grid, patches in row-major order)
# --------------------------------------------------------------------------------------------

ATTN = torch.tensor([[0.5, 0.25, 0.125, 0.125], [1.0, 3.0, 0.0, 4.0]])


def test_cutmix_boxes_on_the_patch_grid():
    # row 0 pastes its partner's top-left patch: area share 12/16, attention share 1 - 0.5;
    # row 1 the right half (patches 1 and 3): area 8/16, attention 1 - 7/8 (attention not normalised)
    plan = cutmix_plan(torch.tensor([[0, 2, 0, 2], [0, 4, 2, 4]]), (4, 4), FLIP2)
    expect_lam(transmix_label_lam(plan, ATTN), [(0.75 + 0.5) / 2, (0.5 + 0.125) / 2], "official mean")
    expect_lam(transmix_label_lam(plan, ATTN, attention_weight=1.0), [0.5, 0.125], "paper, attention alone")
    expect_lam(transmix_label_lam(plan, ATTN, attention_weight=0.0), [0.75, 0.5], "area alone")


def test_a_box_off_the_patch_grid_by_each_patch_rule():
    # [1, 3) x [1, 3): the top-left pixels (0,0) (0,2) (2,0) (2,2) of the patches: only patch 3's
    # is inside ("nearest"); each patch has one of its four pixels inside ("mean")
    plan = cutmix_plan(torch.tensor([[1, 3, 1, 3], [0, 0, 0, 0]]), (4, 4), FLIP2)
    near = transmix_label_lam(plan, ATTN, patch_share="nearest")
    mean = transmix_label_lam(plan, ATTN, patch_share="mean")
    expect_lam(near, [(0.75 + (1 - 0.125)) / 2, 1.0], "nearest")
    expect_lam(mean, [(0.75 + (1 - 0.25)) / 2, 1.0], "mean")


def test_a_mask_plan_weighs_each_patch_by_its_region_weight():
    # row 0 keeps none of patch 0, half of pixel (0, 2) (patch 1's top-left), all the rest:
    # area share 11.5 / 16; partner share of the patches: nearest (1, 0.5, 0, 0), mean (1, 0.125, 0, 0)
    own = torch.ones(2, 4, 4)
    own[0, :2, :2] = 0.0
    own[0, 0, 2] = 0.5
    plan = mask_plan(own, FLIP2)
    area = 11.5 / 16
    expect_lam(transmix_label_lam(plan, ATTN), [(area + 1 - (0.5 + 0.25 * 0.5)) / 2, 1.0], "nearest")
    expect_lam(transmix_label_lam(plan, ATTN, patch_share="mean"),
               [(area + 1 - (0.5 + 0.25 * 0.125)) / 2, 1.0], "mean")


def test_attention_all_on_its_own_patches_gives_weight_one():
    plan = cutmix_plan(torch.tensor([[0, 2, 0, 2], [2, 4, 0, 4]]), (4, 4), FLIP2)   # patch 0; patches 2, 3
    attention = torch.tensor([[0.0, 0.2, 0.3, 0.5], [0.7, 0.3, 0.0, 0.0]])
    expect_lam(transmix_label_lam(plan, attention, attention_weight=1.0), [1.0, 1.0], "paper")
    labels = torch.tensor([3, 7])
    soft = TransMix(num_classes=K, label_smoothing=0.1, attention_weight=1.0)(plan, labels, attention)
    assert torch.equal(soft, smoothed(labels, 0.1)), f"targets {soft} are not the plain smoothed labels"


def test_no_mass_over_the_patches_keeps_the_area_share():
    plan = cutmix_plan(torch.tensor([[0, 2, 0, 2], [0, 4, 2, 4]]), (4, 4), FLIP2)
    expect_lam(transmix_label_lam(plan, torch.zeros(2, 4)), [0.75, 0.5], "zero attention")


def test_mixup_rows_and_unmixed_rows_keep_the_plans_weight():
    whole = mixup_plan(torch.tensor([0.25, 0.625]), FLIP2)              # no boxes at all
    expect_lam(transmix_label_lam(whole, ATTN), [0.25, 0.625], "mixup plan")
    x = torch.rand(8, 3, 16, 16)
    plan = fastmix.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", prob=0.7,
                         generator=torch.Generator().manual_seed(3)).plan(x)
    kinds = set(plan.kind.tolist())
    assert {MIXUP, CUTMIX} <= kinds, f"the seed draws no mix of kinds: {plan.kind.tolist()}"
    lam = transmix_label_lam(plan, torch.rand(8, 16, generator=torch.Generator().manual_seed(4)))
    keep = plan.kind != CUTMIX
    assert torch.equal(lam[keep], plan.label_lam[keep]), f"rows {keep.nonzero().flatten().tolist()} changed"


def test_a_plan_with_no_mixing_gives_the_plain_targets():
    x = torch.rand(6, 3, 16, 16)
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    for plan in (fastmix.Mixup(cutmix_alpha=1.0, mixup_alpha=0.0, prob=0.0).plan(x),
                 cutmix_plan(torch.zeros(6, 4, dtype=torch.int32), (16, 16))):
        soft = TransMix(num_classes=K, label_smoothing=0.2)(plan, labels, torch.rand(6, 16))
        assert torch.equal(soft, smoothed(labels, 0.2)), f"kinds {plan.kind.tolist()}: {soft}"


def test_targets_mix_the_two_labels_with_the_new_weight():
    plan = cutmix_plan(torch.tensor([[0, 2, 0, 2], [0, 4, 2, 4]]), (4, 4), FLIP2)
    labels = torch.tensor([2, 9])
    lam = torch.tensor([0.625, 0.3125])
    want = lam[:, None] * smoothed(labels, 0.1) + (1 - lam[:, None]) * smoothed(labels.flip(0), 0.1)
    soft = TransMix(num_classes=K, label_smoothing=0.1)(plan, labels, ATTN)
    assert torch.allclose(soft, want, atol=1e-7, rtol=0), f"{soft} != {want}"     # float32 rounding of two terms
    soft_labels = TransMix(label_smoothing=0.1)(plan, smoothed(labels), ATTN)
    assert torch.allclose(soft_labels, want, atol=1e-7, rtol=0), "soft (B, K) labels"


def test_per_head_attention_is_averaged():
    plan = cutmix_plan(torch.tensor([[0, 2, 0, 2], [0, 4, 2, 4]]), (4, 4), FLIP2)
    heads = torch.stack([ATTN * 2, ATTN * 0], 1)           # the mean over heads is ATTN
    expect_lam(transmix_label_lam(plan, heads), transmix_label_lam(plan, ATTN), "(B, heads, N)")


# --------------------------------------------------------------------------------------------
# sampled plans against the pixels the blend writes
# --------------------------------------------------------------------------------------------

def partner_share_by_blending(plan, batch: int, size) -> torch.Tensor:
    """``(B, H, W)``: each sample's share of its partner's pixels, read from applying ``plan`` to a
    batch whose channel ``j`` is 1 on sample ``j`` (the real blend, not the module's geometry)."""
    x = torch.eye(batch)[:, :, None, None].expand(batch, batch, *size).contiguous()
    out = F.apply(x, plan)
    return out[torch.arange(batch), plan.partner].double()


@pytest.mark.parametrize("name, op", [
    ("cutmix-elem", fastmix.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem")),
    ("switch-elem", fastmix.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem")),
    ("fmix-elem", fastmix.FMix(mode="elem", max_soft=0.2)),
    ("saliencymix", fastmix.SaliencyMix(mode="elem")),
])
@pytest.mark.parametrize("rule", ["nearest", "mean"])
def test_sampled_plans_match_the_official_formula_on_blended_pixels(name, op, rule):
    batch, size, patch = 8, (16, 24), 4
    op.generator = torch.Generator().manual_seed(7)
    plan = op.plan(torch.rand(batch, 3, *size))
    attention = torch.rand(batch, 2, 24, generator=torch.Generator().manual_seed(8))
    share = partner_share_by_blending(plan, batch, size)[:, None]
    if rule == "nearest":      # the official: nn.Upsample(size=grid) of the pixel mask
        share = nnf.interpolate(share, size=(4, 6), mode="nearest")
    else:
        share = nnf.avg_pool2d(share, patch)
    a = attention.double().mean(1)
    lam_attn = 1 - (a * share.flatten(1)).sum(1) / a.sum(1)
    cut = plan.kind == CUTMIX
    want = torch.where(cut, (plan.label_lam.double() + lam_attn) / 2, plan.label_lam.double())
    got = TransMix(patch_share=rule).label_lam(plan, attention)
    # float32 sums of 24 products of values <= 1: a few units of 2**-24 each
    bad = ((got.double() - want).abs() > 1e-6).nonzero().flatten().tolist()
    assert cut.any(), f"{name}: no row cut"
    assert not bad, f"{name}: sample {bad[0]} (kind {int(plan.kind[bad[0]])}) has {float(got[bad[0]])}, " \
                    f"expected {float(want[bad[0]])}"


# --------------------------------------------------------------------------------------------
# the attention hook, on a tiny ViT with timm's module structure
# --------------------------------------------------------------------------------------------

class TinyAttention(nn.Module):
    """timm's ``Attention``: one ``qkv`` Linear to 3 * heads * head_dim, fused attention by default."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused_attn = True
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.weights = None        # the explicit path's softmax, for the test to read

    def forward(self, x):
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.fused_attn:
            x = nnf.scaled_dot_product_attention(q, k, v)
        else:
            self.weights = ((q * self.scale) @ k.transpose(-2, -1)).softmax(-1)
            x = self.weights @ v
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, dim))


class TinyBlock(nn.Module):
    def __init__(self, dim, heads, qk_norm):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = TinyAttention(dim, heads, qk_norm)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """timm's ``VisionTransformer`` layout: class token, ``reg_tokens`` register tokens, patches."""

    def __init__(self, img=16, patch=4, dim=16, heads=2, depth=2, qk_norm=False, reg_tokens=0):
        super().__init__()
        self.num_prefix_tokens = 1 + reg_tokens
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.prefix = nn.Parameter(torch.randn(1, self.num_prefix_tokens, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (img // patch) ** 2, dim) * 0.5)
        self.blocks = nn.Sequential(*[TinyBlock(dim, heads, qk_norm) for _ in range(depth)])
        self.head = nn.Linear(dim, K)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        x = self.blocks(torch.cat([self.prefix.expand(x.shape[0], -1, -1), x], 1))
        return self.head(x[:, 0])


@pytest.mark.parametrize("qk_norm, reg_tokens", [(False, 0), (True, 0), (False, 2), (True, 3)])
def test_the_hook_matches_the_explicit_attention(qk_norm, reg_tokens):
    torch.manual_seed(0)
    model = TinyViT(qk_norm=qk_norm, reg_tokens=reg_tokens)
    x = torch.randn(5, 3, 16, 16)
    with ClassTokenAttention(model) as grab:
        fused_out = model(x)
        assert model.blocks[-1].attn.weights is None, "the hooked forward left fused attention"
        got = grab.attention
    attn = model.blocks[-1].attn
    attn.fused_attn = False
    explicit_out = model(x)
    want = attn.weights[:, :, 0, 1 + reg_tokens:].mean(1)
    assert got.shape == (5, 16) and got.dtype == torch.float32 and not got.requires_grad
    # the same float32 logits up to the summation order of a 8-term dot product, then softmax:
    # a few 2**-24 relative per weight
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-7), f"max difference {(got - want).abs().max()}"
    assert torch.allclose(fused_out, explicit_out, atol=1e-5), "the tiny model's two paths disagree"
    model(x)                                                   # the hook is off after the block
    assert torch.equal(grab.attention, got), "the removed hook still records"


def test_the_hook_on_an_attention_module_and_the_function():
    torch.manual_seed(1)
    attn = TinyAttention(8, 2)
    tokens = torch.randn(3, 5, 8)
    attn.fused_attn = False
    attn(tokens)
    want = attn.weights[:, :, 0, 1:].mean(1)
    got = class_token_attention(attn.qkv(tokens), attn)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-7), f"max difference {(got - want).abs().max()}"
    grab = ClassTokenAttention(attn)
    attn(tokens)
    assert torch.allclose(grab.attention, want, rtol=1e-5, atol=1e-7)
    grab.remove()


def test_hook_and_relabel_in_a_step_read_nothing_back():
    torch.manual_seed(2)
    model = TinyViT()
    x = torch.rand(4, 3, 16, 16)
    cutmix = fastmix.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem", generator=torch.Generator().manual_seed(0))
    labels = smoothed(torch.tensor([1, 2, 3, 4]))
    relabel = TransMix(label_smoothing=0.1)
    grab = ClassTokenAttention(model)
    with NoReadBack():
        plan = cutmix.plan(x)
        model(F.apply(x, plan))
        soft = relabel(plan, labels, grab.attention)
    grab.remove()
    assert soft.shape == (4, K) and torch.allclose(soft.sum(1), torch.ones(4)), f"rows sum to {soft.sum(1)}"


# --------------------------------------------------------------------------------------------
# errors name the argument
# --------------------------------------------------------------------------------------------

PLAN = cutmix_plan(torch.tensor([[0, 2, 0, 2], [0, 4, 2, 4]]), (4, 4), FLIP2)
LABELS = torch.tensor([1, 2])


def _relabel(**kwargs):
    return lambda: TransMix(num_classes=K, **kwargs)(PLAN, LABELS, ATTN)


def _call(plan=PLAN, labels=LABELS, attention=ATTN, **kwargs):
    return lambda: TransMix(num_classes=K, **kwargs)(plan, labels, attention)


@pytest.mark.parametrize("build, error, name", [
    pytest.param(_call(attention=ATTN[:1]), ValueError, "attention", id="attention-batch"),
    pytest.param(_call(attention=ATTN[0]), ValueError, "attention", id="attention-1d"),
    pytest.param(_call(attention=ATTN[:, None, None]), ValueError, "attention", id="attention-4d"),
    pytest.param(_call(attention=(ATTN * 8).long()), TypeError, "attention", id="attention-int"),
    pytest.param(_call(attention=ATTN.tolist()), TypeError, "attention", id="attention-list"),
    pytest.param(_call(attention=torch.rand(2, 5)), ValueError, "attention", id="attention-with-class-token"),
    pytest.param(_call(attention=torch.rand(2, 6)), ValueError, "attention", id="attention-no-square-grid"),
    pytest.param(_call(attention=torch.rand(2, 4), patch_size=3), ValueError, "patch_size", id="patch-not-tiling"),
    pytest.param(_call(attention=torch.rand(2, 4), patch_size=1), ValueError, "attention", id="patch-count"),
    pytest.param(_call(patch_size="2"), TypeError, "patch_size", id="patch-size-type"),
    pytest.param(_call(patch_size=(2, 0)), ValueError, r"patch_size\[1\]", id="patch-size-zero"),
    pytest.param(_relabel(attention_weight=1.5), ValueError, "attention_weight", id="attention-weight"),
    pytest.param(_relabel(patch_share="max"), ValueError, "patch_share", id="patch-share"),
    pytest.param(_relabel(label_smoothing=1.0), ValueError, "label_smoothing", id="smoothing"),
    pytest.param(_call(plan="cutmix"), TypeError, "plan", id="plan-type"),
    pytest.param(_call(labels=torch.tensor([1, 2, 3])), ValueError, "target", id="target-batch"),
    pytest.param(_call(labels=torch.tensor([1, 12])), ValueError, "target", id="target-range"),
    pytest.param(lambda: ClassTokenAttention(nn.Linear(4, 4)), ValueError, "model", id="model-not-a-vit"),
    pytest.param(lambda: ClassTokenAttention(TinyViT(), num_prefix_tokens=0), ValueError, "num_prefix_tokens",
                 id="no-class-token"),
    pytest.param(lambda: class_token_attention(torch.rand(2, 5, 20), TinyAttention(8, 2)), ValueError, "attn.qkv",
                 id="qkv-features"),
    pytest.param(lambda: class_token_attention(torch.rand(2, 3, 24), TinyAttention(8, 2), 3), ValueError,
                 "num_prefix_tokens", id="prefix-takes-every-token"),
])
def test_errors_name_the_argument(build, error, name):
    with pytest.raises(error, match=rf"^{name}:"):
        build()
