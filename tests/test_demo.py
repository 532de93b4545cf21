"""``fastmix demo``: the picture (with Pillow), the table (always), and captions that tell the truth."""
from __future__ import annotations

import re
import sys

import pytest
import torch

from fastmix.apps import cli, demo

METHOD_ROWS = len(demo.METHODS)


def run_demo(capsys, *args) -> tuple[int, str]:
    code = cli.main(["demo", "--bench-batch", "0", *args])
    return code, capsys.readouterr().out


def parse_caption(text: str) -> list[tuple[int, float]]:
    pairs = re.fullmatch(r"\d\.\d\d #\d+( \+ \d\.\d\d #\d+)*", text)
    assert pairs, f"caption {text!r} is not 'w #k + w #k'"
    return [(int(k), float(w)) for w, k in re.findall(r"(\d\.\d\d) #(\d+)", text)]


def test_writes_the_grid_png_with_every_method_in_its_row(tmp_path, capsys):
    image_module = pytest.importorskip("PIL.Image", reason="the demo's picture needs Pillow")
    path = tmp_path / "grid.png"
    code, out = run_demo(capsys, "--out", str(path), "--samples", "5", "--batch", "2", "--size", "64")
    assert code == 0, out
    assert f"wrote {path}" in out
    picture = image_module.open(path)
    # the layout the module documents: a name column, then per sample a tile and a gap; per row
    # (the originals and one per method) a tile, its caption and a gap
    width = demo.LABEL_WIDTH + 5 * (demo.TILE + demo.GAP)
    height = demo.GAP + (METHOD_ROWS + 1) * (demo.TILE + demo.CAPTION + demo.GAP)
    assert (picture.format, picture.mode, picture.size) == ("PNG", "RGB", (width, height))
    pixels = torch.frombuffer(bytearray(picture.tobytes()), dtype=torch.uint8).view(height, width, 3).permute(2, 0, 1)
    originals, rows = demo.mix_rows(seed=0, count=5)
    for r, images in enumerate([originals] + [row.images for row in rows]):
        for c in range(5):
            x, y = demo.LABEL_WIDTH + c * (demo.TILE + demo.GAP), demo.GAP + r * (demo.TILE + demo.CAPTION + demo.GAP)
            tile = pixels[:, y:y + demo.TILE, x:x + demo.TILE]
            name = "originals" if r == 0 else rows[r - 1].name
            assert torch.equal(tile, images[c]), f"tile of {name}, sample {c} is not that sample's mixed image"


def test_without_pillow_says_how_to_get_the_picture_and_prints_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)          # import PIL now raises ImportError
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    path = tmp_path / "never.png"
    code, out = run_demo(capsys, "--out", str(path), "--samples", "2", "--size", "64")
    assert code == 0, out
    assert 'pip install "fastmix[demo]"' in out
    assert not path.exists()
    table = [line for line in out.splitlines() if line.endswith((" ok", " label kept"))]
    assert len(table) == METHOD_ROWS * 4, out                 # --batch 4 samples per method
    assert out.rstrip().endswith("own pixels (Cutout, Random Erasing: labels kept): yes")


def test_captions_are_the_targets_the_transforms_returned():
    _, rows = demo.mix_rows(seed=3)
    mixed = 0
    for row in rows:
        for i, (text, target) in enumerate(zip(row.captions, row.targets)):
            shown = parse_caption(text)
            if target[i] >= 0.005:   # a sample replaced all but a few pixels (FMix) shows no own weight
                assert shown[0][0] == i, f"{row.name} sample {i}: caption {text!r} does not start with its own label"
            want = {k: float(w) for k, w in enumerate(target) if w >= 0.005}
            assert sorted(k for k, _ in shown) == sorted(want), f"{row.name} sample {i}: {text!r} vs {want}"
            for k, w in shown:
                assert abs(w - want[k]) <= 0.005 + 1e-9, f"{row.name} sample {i}: {text!r} vs {want}"
            mixed += len(shown) > 1
    assert mixed >= 20, f"only {mixed} tiles show a mix"


def test_the_table_check_catches_targets_that_disagree_with_pixels(monkeypatch):
    build_mixup = demo.METHODS[0].build

    def swapped_targets(k, g):                               # a Mixup whose targets name the wrong share
        mixup = build_mixup(k, g)

        def mix(images, labels):
            images, targets = mixup(images, labels)
            return images, targets.flip(1)
        return mix

    lines = []
    assert demo.check_table(batch=4, size=16, out=lines.append)
    monkeypatch.setattr(demo, "METHODS", [demo.DemoMethod("lying", swapped_targets)])
    assert not demo.check_table(batch=4, size=16, out=lines.append)
    assert lines[-1].endswith("NO") and any(line.endswith("WRONG") for line in lines)


def test_the_image_set_is_distinct_and_always_the_same():
    images = demo.sample_images()
    assert images.shape == (len(demo.SAMPLE_NAMES), 3, 128, 128) and images.dtype == torch.uint8
    assert torch.equal(images, demo.sample_images())
    for i in range(len(images)):
        for j in range(i):
            differ = (images[i] != images[j]).any(0).float().mean()
            assert differ > 0.3, f"samples {j} and {i} share {1 - differ:.0%} of their pixels"
    with pytest.raises(ValueError, match="^count"):
        demo.sample_images(count=9)


def test_adding_a_method_leaves_the_other_rows_as_they_were():
    _, before = demo.mix_rows(seed=0, count=4)
    extra = demo.DemoMethod("Mixup again", demo.METHODS[0].build)
    _, after = demo.mix_rows(seed=0, count=4, methods=[extra] + demo.METHODS)
    for old, new in zip(before, after[1:]):
        assert torch.equal(old.images, new.images) and old.captions == new.captions, old.name
