"""fastmix under torch.distributed: two processes (gloo, CPU) train one DistributedDataParallel
model, each rank mixing its own batch with ``fastmix.Mixup`` before the forward pass.

Checked: the replicas stay equal (DDP averages the gradients of differently mixed batches);
with the documented recipe, a generator per rank seeded with ``seed + rank``, each rank's plans
are the same in two runs and differ between ranks. The two ranks run every scenario in one
spawn (a few seconds, most of it importing torch twice).

Plans are read off the targets: labels are ``arange(B)`` with ``B`` classes, so row ``i`` of
the soft targets holds ``λ_i`` at column ``i`` and ``1 - λ_i`` at its partner's column.
"""
import datetime

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import fastmix

WORLD_SIZE = 2
STEPS = 3
BATCH = 8
SEED = 7


def per_rank_generator(seed: int, rank: int) -> torch.Generator:
    """The README's recipe: one explicit generator per rank (on the rank's device), seeded ``seed + rank``."""
    return torch.Generator().manual_seed(seed + rank)


def _mixer(generator):
    return fastmix.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", label_smoothing=0.0, num_classes=BATCH,
                         generator=generator)


def _train(rank: int, mixer) -> dict:
    """A few DDP steps; the rank's data comes from its own generator, as a DistributedSampler's shard would."""
    model = DistributedDataParallel(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, BATCH)))
    initial = [p.detach().clone() for p in model.parameters()]
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    data = torch.Generator().manual_seed(100 + rank)
    targets, losses = [], []
    for _ in range(STEPS):
        images, labels = torch.rand(BATCH, 3, 8, 8, generator=data), torch.arange(BATCH)
        images, target = mixer(images, labels)  # in place, on this rank's batch only
        loss = -(target * model(images).log_softmax(1)).sum(1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        targets.append(target)
        losses.append(float(loss))
    return {"targets": torch.stack(targets), "losses": losses, "initial": initial,
            "params": [p.detach().clone() for p in model.parameters()]}


def _worker(rank: int, rendezvous: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD_SIZE,
                            timeout=datetime.timedelta(seconds=60))
    try:
        results = {}
        # the recipe twice, with torch's global generator in different states (per rank, too) around it
        torch.manual_seed(1000 + rank)
        results["recipe"] = _train(rank, _mixer(per_rank_generator(SEED, rank)))
        torch.manual_seed(2000)
        results["recipe_again"] = _train(rank, _mixer(per_rank_generator(SEED, rank)))
        # no generator, every rank seeded alike (the usual way to get equal initial weights)
        torch.manual_seed(0)
        results["default"] = _train(rank, _mixer(None))
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(out / "rendezvous"), str(out)), nprocs=WORLD_SIZE, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD_SIZE)]


@pytest.mark.parametrize("scenario", ["recipe", "recipe_again", "default"])
def test_replicas_stay_equal_while_each_rank_mixes_its_own_batch(ranks, scenario):
    first, second = ranks[0][scenario], ranks[1][scenario]
    assert first["losses"] != second["losses"], "the ranks should have trained on different mixed batches"
    for i, (a, b, start) in enumerate(zip(first["params"], second["params"], first["initial"])):
        assert torch.equal(a, b), f"{scenario}: parameter {i} differs between the ranks after {STEPS} steps"
        assert not torch.equal(a, start), f"{scenario}: parameter {i} never moved"


def test_targets_encode_the_plans():
    # the observable the other tests compare: row i is λ_i at i and 1 - λ_i at the flip partner B-1-i
    target = _mixer(torch.Generator().manual_seed(0))(torch.rand(BATCH, 3, 8, 8), torch.arange(BATCH))[1]
    lam = target.diagonal()
    assert torch.allclose(target.flip(1).diagonal(), 1 - lam)
    assert torch.allclose(target.sum(1), torch.ones(BATCH))


def test_per_rank_generators_make_each_rank_reproducible_and_the_ranks_differ(ranks):
    for rank, result in enumerate(ranks):
        assert torch.equal(result["recipe"]["targets"], result["recipe_again"]["targets"]), \
            f"rank {rank}: the same seed gave different plans in two runs"
    assert not torch.equal(ranks[0]["recipe"]["targets"], ranks[1]["recipe"]["targets"]), \
        "seed + rank gave both ranks the same plans"


def test_ranks_draw_different_plans_by_default(ranks):
    assert not torch.equal(ranks[0]["default"]["targets"], ranks[1]["default"]["targets"]), \
        "with generator=None and equally seeded ranks, both ranks drew the same plans"
