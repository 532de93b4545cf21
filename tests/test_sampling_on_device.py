"""Sampling stays on the device: every sampler runs on meta tensors (so it never reads a sampled
value back to the host), and the Mixup-CutMix sampler compiles under ``torch.compile`` into one
graph without a break.
"""
from __future__ import annotations

import pytest
import torch

from fastmix.functional import cutmix_plan, cutout_plan, erasing_plan, mixup_cutmix_plan, mixup_plan
from fastmix.partners import cycles_of
from fastmix.plan import CUTMIX, MIXUP, NONE

from helpers import tensors_of

META_SAMPLERS = {
    **{f"mixcut-{mode}-{pairing}": (lambda mode=mode, pairing=pairing: mixup_cutmix_plan(
        8, (16, 24), mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, pairing=pairing, device="meta"))
       for mode in ("batch", "pair", "elem") for pairing in ("flip", "roll")},
    "mixup-only-odd": lambda: mixup_cutmix_plan(7, None, mixup_alpha=0.8, mode="elem", device="meta"),
    "cutmix-minmax": lambda: mixup_cutmix_plan(8, (16, 24), cutmix_minmax=(0.2, 0.8), mode="pair", device="meta"),
    "cutmix-uncorrected": lambda: mixup_cutmix_plan(8, (16, 24), mixup_alpha=0.0, cutmix_alpha=1.0,
                                                    correct_lam=False, device="meta"),
    "cutout": lambda: cutout_plan(8, (16, 24), n_holes=3, length=6, p=0.5, device="meta"),
    "cutout-rgb": lambda: cutout_plan(8, (16, 24), fill=(0.1, 0.2, 0.3), device="meta"),
    "erasing-number": lambda: erasing_plan(8, (16, 24), value=0.5, device="meta"),
    "erasing-random": lambda: erasing_plan(8, (16, 24), value="random", device="meta"),
    # the constructors check given values (lam in [0, 1], a permutation): on CUDA that reads one
    # bool back; on meta there are no values, and the checks are skipped
    "mixup_plan": lambda: mixup_plan(torch.rand(8, device="meta")),
    "cutmix_plan": lambda: cutmix_plan(torch.zeros(8, 4, dtype=torch.int32, device="meta"), (16, 24),
                                       partner=torch.arange(8, device="meta")),
}


def test_meta_tensors_cannot_be_read():
    # the premise of the meta tests: any host read of a sampled value raises
    with pytest.raises(Exception):
        torch.zeros(1, device="meta").item()
    with pytest.raises(Exception):
        bool(torch.zeros(1, device="meta") < 1)


@pytest.mark.parametrize("name", sorted(META_SAMPLERS))
def test_samplers_run_on_meta(name):
    plan = META_SAMPLERS[name]()
    assert plan.device.type == "meta"
    for field, t in tensors_of(plan).items():
        assert t.device.type == "meta", f"{name}: {field} is on {t.device}"
    cycles = plan.cycles
    for field in ("walk", "cycle_start"):
        t = getattr(cycles, field)
        assert t.device.type == "meta", f"{name}: cycles.{field} is on {t.device}"
    assert cycles.walk.shape == (plan.batch_size,) and cycles.cycle_start.shape == (plan.batch_size + 1,)
    for_masks = plan.for_masks()
    for field, t in tensors_of(for_masks).items():
        assert t.device.type == "meta", f"{name}: for_masks().{field} is on {t.device}"


def test_pointer_jumping_runs_on_meta():
    partner = torch.arange(9, device="meta")
    cycles = cycles_of(partner, "perm")
    assert cycles.walk.device.type == "meta" and cycles.cycle_start.device.type == "meta"
    assert cycles.walk.shape == (9,) and cycles.cycle_start.shape == (10,)
    assert cycles.walk.dtype == torch.int32 and cycles.cycle_start.dtype == torch.int32


@pytest.mark.slow
def test_sampler_compiles_without_graph_break():
    import torch._dynamo
    from torch._dynamo.utils import counters

    def step(x):
        plan = mixup_cutmix_plan(x.shape[0], (x.shape[-2], x.shape[-1]), mode="elem", mixup_alpha=0.8,
                                 cutmix_alpha=1.0, device=x.device)
        return plan.partner, plan.lam_self, plan.lam_partner, plan.box, plan.label_lam, plan.kind

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    x = torch.zeros(64, 3, 16, 24)
    partner, lam_self, lam_partner, box, label_lam, kind = compiled(x)
    assert counters["stats"]["unique_graphs"] == 1, f"expected one graph, got {dict(counters['stats'])}"
    assert not counters["graph_break"], f"graph breaks: {dict(counters['graph_break'])}"
    assert partner.tolist() == list(range(63, -1, -1))
    assert set(kind.unique().tolist()) <= {NONE, MIXUP, CUTMIX}
    assert {MIXUP, CUTMIX} <= set(kind.unique().tolist()), f"64 elem draws gave kinds {kind.unique().tolist()}"
    assert bool(((label_lam >= 0) & (label_lam <= 1)).all())
    assert bool((lam_self[kind == CUTMIX] == 0).all() & (lam_partner[kind == CUTMIX] == 1).all())
    cut_box = box[kind == CUTMIX, 0]
    assert bool(((cut_box[:, 1] <= 16) & (cut_box[:, 3] <= 24) & (cut_box[:, 0] < cut_box[:, 1])).all())
    again = compiled(x)
    assert not torch.equal(again[1], lam_self), "the compiled sampler returned the same λ twice"
