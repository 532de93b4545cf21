"""Manifold Mixup and PatchUp by forward hooks (fastmix/hidden.py): the model's output and gradients
equal those of the same model with the mix written by hand at the chosen layer, the targets follow
the papers' rules, the blocks are block_size squares drawn at the paper's rate, hooks never outlive
a call, eval mode is untouched, and bad arguments raise at construction."""
import copy
import math

import pytest
import torch
from torch import nn

from fastmix.hidden import INPUT, ManifoldMixup, PatchUp

from helpers import Z, assert_uniform_ints, backend, check_row, mixed_row, requires_triton, seeded

K = 5


class Tiny(nn.Module):
    """A custom module: hooks must work without any change to its code."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        self.head = nn.Linear(4, K)

    def forward(self, x):
        return self.head(self.body(self.stem(x)).mean((2, 3)))


def sequential():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, K))


MODELS = {"sequential": (sequential, ["input", "0", "1", "2"]), "custom": (Tiny, ["input", "stem", "body.0", "body"])}


def _inputs(batch=6, gen=None):
    gen = gen or seeded(0)
    return torch.randn(batch, 3, 6, 7, generator=gen), torch.randperm(K, generator=gen).repeat(2)[:batch]


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _by_hand(model, layer, mixed_at):
    """A copy of ``model`` whose ``layer`` output (or input, for "input") goes through ``mixed_at``."""
    twin = copy.deepcopy(model)
    if layer == INPUT:
        return twin, mixed_at
    twin.get_submodule(layer).register_forward_hook(lambda _m, _i, out: mixed_at(out))
    return twin, lambda x: x


def _weights(plan, h):
    shape = (-1,) + (1,) * (h.dim() - 1)
    return plan.lam_self.view(shape).to(h.dtype), plan.lam_partner.view(shape).to(h.dtype), plan.partner


def _assert_same_step(model, mixer, layer, hand_mix, x, y):
    """mixer's output and parameter gradients equal a hand-written mix on the same plan."""
    out, soft = mixer(x, y, layer=layer)
    assert mixer.last_layer == layer and _no_hooks(model), "a hook outlived the call"
    plan = mixer.last_plan
    twin, prepare = _by_hand(model, layer, lambda h: hand_mix(h, plan))
    want = twin(prepare(x))
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6, msg=f"{layer}: output differs from the hand mix")
    weights = torch.randn(out.shape, generator=seeded(1))
    (out * weights).sum().backward()
    (want * weights).sum().backward()
    for (name, got), (_, ref) in zip(model.named_parameters(), twin.named_parameters()):
        assert got.grad is not None and torch.isfinite(got.grad).all(), f"{layer}: no finite gradient for {name}"
        torch.testing.assert_close(got.grad, ref.grad, rtol=1e-5, atol=1e-6, msg=f"{layer}: gradient of {name}")
    return plan, soft


# --------------------------------------------------------------------------------------------
# Manifold Mixup
# --------------------------------------------------------------------------------------------

def _manifold_by_hand(h, plan):
    a, b, partner = _weights(plan, h)
    return a * h + b * h[partner]


@pytest.mark.parametrize("model_name", list(MODELS))
def test_manifold_mixup_is_the_mix_at_the_chosen_layer(model_name):
    build, layers = MODELS[model_name]
    model = build()
    x, y = _inputs()
    mixer = ManifoldMixup(model, layers, alpha=2.0, num_classes=K, generator=seeded(3))
    for layer in layers:
        model.zero_grad()
        plan, soft = _assert_same_step(model, mixer, layer, _manifold_by_hand, x, y)
        for i in range(x.shape[0]):
            j = int(plan.partner[i])
            own = 1.0 if i == j else float(plan.lam_self[i])
            if i != j:
                assert float(plan.lam_self[i]) + float(plan.lam_partner[i]) == 1.0
            check_row(soft, i, mixed_row(K, int(y[i]), int(y[j]), own), f"manifold {layer}")


def test_manifold_mixup_input_gradient_reaches_x():
    model = sequential()
    x, y = _inputs()
    x.requires_grad_()
    out, _ = ManifoldMixup(model, INPUT, num_classes=K, generator=seeded(4))(x, y)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_layers_are_drawn_uniformly_and_reproducibly():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, K))
    layers = ["input", "0", "1", "2"]
    x, y = torch.randn(4, 3, generator=seeded(0)), torch.arange(4)

    def run(seed, steps):
        mixer = ManifoldMixup(model, layers, num_classes=K, generator=seeded(seed))
        chosen = []
        for _ in range(steps):
            mixer(x, y)
            chosen.append(layers.index(mixer.last_layer))
        return torch.tensor(chosen), mixer.last_plan

    chosen, plan = run(5, 200)
    assert_uniform_ints(chosen, len(layers), "chosen layers")
    again, plan_again = run(5, 200)
    assert torch.equal(chosen, again) and torch.equal(plan.lam_self, plan_again.lam_self)


# --------------------------------------------------------------------------------------------
# PatchUp
# --------------------------------------------------------------------------------------------

def _patchup_by_hand(h, plan):
    holes = plan.mask.view(h.shape).to(h.dtype)
    a, b, partner = _weights(plan, h)
    return (1 - holes) * h + holes * (a * h + b * h[partner])


def _is_union_of_squares(holes, size):
    """Morphological opening by a size x size square (clipped at the border) leaves the map as it is."""
    pad = size // 2
    maps = holes.reshape(-1, 1, *holes.shape[-2:])
    eroded = -nn.functional.max_pool2d(nn.functional.pad(-maps, (pad,) * 4, value=-1.0), size, stride=1)
    opened = nn.functional.max_pool2d(eroded, size, stride=1, padding=pad)
    return torch.equal(opened, maps)


@pytest.mark.parametrize("mode", ["hard", "soft"])
@pytest.mark.parametrize("model_name", list(MODELS))
def test_patchup_is_the_block_mix_at_the_chosen_layer(model_name, mode):
    build, layers = MODELS[model_name]
    layers = [name for name in layers if name != "2"]          # "2" of the sequential is a conv: keep three
    model = build()
    x, y = _inputs()
    mixer = PatchUp(model, layers, alpha=2.0, block_size=3, gamma=0.5, mode=mode, num_classes=K,
                    generator=seeded(7))
    for layer in layers:
        model.zero_grad()
        plan, soft = _assert_same_step(model, mixer, layer, _patchup_by_hand, x, y)
        channels = 3 if layer == INPUT else 4
        holes = plan.mask.view(x.shape[0], channels, 6, 7)
        assert bool(((holes == 0) | (holes == 1)).all()) and _is_union_of_squares(holes, 3), f"{layer}: not blocks"
        changed = holes.double().mean((1, 2, 3))
        for i in range(x.shape[0]):
            j = int(plan.partner[i])
            if i == j or float(changed[i]) == 0:
                own = 1.0
            elif mode == "hard":
                assert float(plan.lam_self[i]) == 0.0 and float(plan.lam_partner[i]) == 1.0
                own = 1.0 - float(changed[i])
            else:
                own = 1.0 - float(changed[i]) * (1.0 - float(plan.lam_self[i]))
            assert float(plan.label_lam[i]) == pytest.approx(own, abs=1e-6), f"{layer}/{mode}: sample {i}'s label"
            check_row(soft, i, mixed_row(K, int(y[i]), int(y[j]), own), f"patchup {mode} {layer}")


def test_patchup_blocks_differ_per_channel_and_sample():
    mixer = PatchUp(sequential(), "0", block_size=3, gamma=0.5, generator=seeded(2))
    holes = mixer.blocks((4, 6, 8, 8), "cpu")
    assert not torch.equal(holes[0, 0], holes[0, 1]) and not torch.equal(holes[0], holes[1])


@pytest.mark.parametrize("block_size,gamma", [(1, 0.3), (3, 0.9)])
def test_patchup_block_rate_is_the_papers(block_size, gamma):
    """A feature lies in a block when some centre is within block_size // 2 of it (clipped at the
    border); centres are Bernoulli(gamma * H W / (bs² (H - bs + 1)(W - bs + 1))) per feature."""
    height = width = 8
    mixer = PatchUp(sequential(), "0", block_size=block_size, gamma=gamma, generator=seeded(11))
    holes = mixer.blocks((64, 8, height, width), "cpu").double()
    rate = gamma * height * width / (block_size ** 2 * (height - block_size + 1) * (width - block_size + 1))
    reach = block_size // 2
    span = [min(p + reach, height - 1) - max(p - reach, 0) + 1 for p in range(height)]
    expected = sum(1 - (1 - rate) ** (sy * sx) for sy in span for sx in span) / (height * width)
    per_map = holes.mean((2, 3)).flatten()
    bound = Z * float(per_map.std()) / math.sqrt(per_map.numel())
    assert abs(float(per_map.mean()) - expected) <= bound, f"hole fraction {float(per_map.mean()):.4f} vs {expected:.4f}"


@requires_triton
def test_patchup_through_the_kernels_equals_the_reference():
    x, y = _inputs(4)
    torch.manual_seed(0)
    base = Tiny()
    outs, grads = [], []
    for name in ("reference", "triton"):
        model = copy.deepcopy(base)
        mixer = PatchUp(model, ["stem"], block_size=3, gamma=0.5, mode="soft", num_classes=K, generator=seeded(9))
        with backend(name):
            out, soft = mixer(x, y)
            out.sum().backward()
        outs.append((out.detach(), soft))
        grads.append([p.grad for p in model.parameters()])
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-6)
    assert torch.equal(outs[1][1], outs[0][1])
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# eval mode, hooks, arguments
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [ManifoldMixup, PatchUp])
def test_eval_mode_is_untouched(cls):
    model = Tiny()
    x, y = _inputs()
    mixer = cls(model, ["stem", "body"], num_classes=K, generator=seeded(1))
    model.eval()
    out, soft = mixer(x, y)
    assert torch.equal(out, model(x)) and mixer.last_plan is None and _no_hooks(model)
    assert torch.equal(soft, nn.functional.one_hot(y, K).float())


def test_hooks_are_removed_when_the_forward_fails():
    model = sequential()
    x, y = _inputs()
    mixer = PatchUp(model, ["5"], num_classes=K)                # a Linear's (B, K) output has no blocks
    with pytest.raises(ValueError, match=r"^layers: PatchUp needs \(B, C, H, W\) feature maps at '5'"):
        mixer(x, y)
    assert _no_hooks(model)


def test_a_layer_that_does_not_run_is_an_error():
    model = Tiny()
    model.spare = nn.ReLU()                                     # registered but never called by forward
    mixer = ManifoldMixup(model, ["spare"], num_classes=K)
    with pytest.raises(RuntimeError, match="did not run"):
        mixer(*_inputs())
    assert _no_hooks(model)


@pytest.mark.parametrize("build,error,name", [
    pytest.param(lambda m: ManifoldMixup("net", ["0"]), TypeError, "module", id="module-not-a-module"),
    pytest.param(lambda m: ManifoldMixup(m, []), ValueError, "layers", id="layers-empty"),
    pytest.param(lambda m: ManifoldMixup(m, ["7"]), ValueError, "layers", id="layers-unknown"),
    pytest.param(lambda m: ManifoldMixup(m, ["0", "0"]), ValueError, "layers", id="layers-twice"),
    pytest.param(lambda m: ManifoldMixup(m, [0]), TypeError, "layers", id="layers-not-str"),
    pytest.param(lambda m: ManifoldMixup(m, [""]), ValueError, "layers", id="layers-root"),
    pytest.param(lambda m: ManifoldMixup(m, ["0"], alpha=0.0), ValueError, "alpha", id="manifold-alpha"),
    pytest.param(lambda m: ManifoldMixup(m, ["0"], prob=-0.1), ValueError, "prob", id="manifold-prob"),
    pytest.param(lambda m: ManifoldMixup(m, ["0"], pairing="x"), ValueError, "pairing", id="manifold-pairing"),
    pytest.param(lambda m: ManifoldMixup(m, ["0"], num_classes=0), ValueError, "num_classes", id="classes"),
    pytest.param(lambda m: PatchUp(m, ["0"], block_size=4), ValueError, "block_size", id="patchup-even-block"),
    pytest.param(lambda m: PatchUp(m, ["0"], block_size=0), ValueError, "block_size", id="patchup-block-0"),
    pytest.param(lambda m: PatchUp(m, ["0"], gamma=1.5), ValueError, "gamma", id="patchup-gamma"),
    pytest.param(lambda m: PatchUp(m, ["0"], mode="medium"), ValueError, "mode", id="patchup-mode"),
    pytest.param(lambda m: PatchUp(m, ["0"], patchup_prob=2.0), ValueError, "patchup_prob", id="patchup-prob"),
    pytest.param(lambda m: PatchUp(m, ["0"], alpha=-1.0), ValueError, "alpha", id="patchup-alpha"),
    pytest.param(lambda m: ManifoldMixup(m, ["0"], num_classes=K)(*_inputs(), layer="1"), ValueError, "layer",
                 id="call-layer-not-listed"),
    pytest.param(lambda m: ManifoldMixup(m, ["0"], num_classes=K)(_inputs()[0], torch.arange(3)), ValueError,
                 "target", id="call-short-target"),
])
def test_bad_arguments_raise_naming_them(build, error, name):
    with pytest.raises(error, match=rf"^{name}\b"):
        build(sequential())
