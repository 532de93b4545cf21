"""``fastmix train``: calibration error, the network, the data loaders, the arms, and a one-epoch
smoke run of the command on a tiny synthetic data set (seconds)."""
import json
import pickle
import sys

import pytest
import torch

from fastmix.apps import cli, train, train_data, train_report
from fastmix.apps.train_arms import ARMS, DEFAULT_ARMS, Arm, ArmSetup, register_arm, select_arms


# ------------------------------------------------------------------------------------------
# expected calibration error
# ------------------------------------------------------------------------------------------

def naive_ece(confidence, correct, bins=15):
    """Guo et al.'s definition, one bin at a time: bin b holds (b/bins, (b+1)/bins], 0 in the first."""
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [(c, k) for c, k in zip(confidence, correct) if (lo < c <= hi) or (b == 0 and c == 0.0)]
        if members:
            accuracy = sum(k for _, k in members) / len(members)
            mean_conf = sum(c for c, _ in members) / len(members)
            total += abs(accuracy - mean_conf) * len(members) / len(confidence)
    return total


@pytest.mark.parametrize("confidence, correct, want", [
    pytest.param([1.0, 1.0, 1.0], [True, True, True], 0.0, id="sure-and-right"),
    pytest.param([0.95] * 4, [True, True, True, False], 0.2, id="one-bin-overconfident"),
    # 0.1 and 0.9 fall in different bins: 0.5 * |0.5 - 0.1| + 0.5 * |1.0 - 0.9|
    pytest.param([0.1, 0.1, 0.9, 0.9], [False, True, True, True], 0.25, id="two-bins"),
    pytest.param([0.0, 1 / 15], [False, False], 1 / 30, id="zero-and-edge-in-first-bin"),
])
def test_ece_hand_computed(confidence, correct, want):
    got = train_report.expected_calibration_error(torch.tensor(confidence, dtype=torch.float64), torch.tensor(correct))
    assert got == pytest.approx(want, abs=1e-12)


def test_ece_matches_the_per_bin_definition_on_random_predictions():
    gen = torch.Generator().manual_seed(0)
    confidence = torch.rand(500, generator=gen, dtype=torch.float64)
    confidence[:15] = torch.arange(1, 16, dtype=torch.float64) / 15  # every bin edge exactly
    correct = torch.rand(500, generator=gen) < confidence.float()
    got = train_report.expected_calibration_error(confidence, correct)
    assert got == pytest.approx(naive_ece(confidence.tolist(), correct.tolist()), abs=1e-12)


def test_ece_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="confidence"):
        train_report.expected_calibration_error(torch.rand(4), torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="confidence"):
        train_report.expected_calibration_error(torch.rand(0), torch.ones(0, dtype=torch.bool))


# ------------------------------------------------------------------------------------------
# the network
# ------------------------------------------------------------------------------------------

def test_network_is_the_keras_cifar10_example():
    # Keras' cifar10_cnn example: conv 32 same, 32 valid, pool, 64 same, 64 valid, pool -> 6x6x64 = 2304,
    # Dense 512, Dense 10: 896 + 9248 + 18496 + 36928 + 1180160 + 5130 = 1,250,858 parameters
    model = train.SourceCNN((3, 32, 32), 10)
    assert model.classifier[0].in_features == 2304
    assert sum(p.numel() for p in model.parameters()) == 1_250_858
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 4
    assert sum(isinstance(m, torch.nn.Linear) for m in model.modules()) == 2


def test_network_rejects_images_too_small_for_its_pools():
    with pytest.raises(ValueError, match="image_shape"):
        train.SourceCNN((3, 9, 9), 10)
    assert train.SourceCNN((3, 10, 10), 4)(torch.zeros(1, 3, 10, 10)).shape == (1, 4)


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------

def _write_cifar_batch(path, data, labels):
    with open(path, "wb") as f:
        pickle.dump({b"data": data.numpy(), b"labels": labels, b"batch_label": b"x"}, f)


@pytest.fixture
def tiny_cifar(tmp_path):
    """A CIFAR-10 python folder with 3 images per batch; pixel value = (n * 7 + position) % 256."""
    folder = tmp_path / train_data.CIFAR10_FOLDER
    folder.mkdir()
    raw = {}
    for k, name in enumerate(train_data.CIFAR10_TRAIN_FILES + (train_data.CIFAR10_TEST_FILE,)):
        n = torch.arange(3 * k, 3 * k + 3)[:, None]
        data = ((n * 7 + torch.arange(3072)[None]) % 256).to(torch.uint8)
        labels = [int(i) % 10 for i in n[:, 0]]
        _write_cifar_batch(folder / name, data, labels)
        raw[name] = (data, labels)
    return tmp_path, raw


def test_cifar_folder_keeps_the_format_channel_planes_and_normalises_with_train_statistics(tiny_cifar):
    root, raw = tiny_cifar
    data = train_data.load(str(root))  # the parent of cifar-10-batches-py works as well as the folder
    assert data.num_classes == 10 and data.image_shape == (3, 32, 32)
    train_raw = torch.cat([raw[n][0] for n in train_data.CIFAR10_TRAIN_FILES]).double() / 255
    # the python format stores 1024 red values, then 1024 green, then 1024 blue, each row-major
    planes = train_raw.view(-1, 3, 1024)
    mean, std = planes.mean((0, 2)), planes.std((0, 2))
    want_first = (train_raw[0].view(3, 32, 32) - mean[:, None, None]) / std[:, None, None]
    assert torch.allclose(data.train.images[0].double(), want_first, atol=1e-5)
    test_raw = raw[train_data.CIFAR10_TEST_FILE][0].double() / 255
    want_test = (test_raw.view(-1, 3, 32, 32) - mean[:, None, None]) / std[:, None, None]
    assert torch.allclose(data.test.images.double(), want_test, atol=1e-5)
    assert data.train.labels.tolist() == sum((raw[n][1] for n in train_data.CIFAR10_TRAIN_FILES), [])
    assert len(data.train) == 15 and len(data.test) == 3


def test_cifar_folder_errors_name_the_data_argument(tiny_cifar, tmp_path):
    root, _ = tiny_cifar
    (root / train_data.CIFAR10_FOLDER / "data_batch_3").unlink()
    with pytest.raises(ValueError, match=r"data: .*missing data_batch_3"):
        train_data.load(str(root))
    with pytest.raises(ValueError, match="data: expected"):
        train_data.load(str(tmp_path / "no-such-folder"))
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in train_data.CIFAR10_TRAIN_FILES + (train_data.CIFAR10_TEST_FILE,):
        _write_cifar_batch(bad / name, torch.zeros(2, 100, dtype=torch.uint8), [0, 1])
    with pytest.raises(ValueError, match=r"data: .*3072"):
        train_data.cifar10_folder(bad)


def test_digits_are_cifar_shaped_stratified_and_normalised():
    pytest.importorskip("sklearn", reason="--data digits needs scikit-learn (the train extra)")
    data = train_data.digits(16)
    assert data.image_shape == (3, 16, 16) and data.num_classes == 10
    assert (len(data.train), len(data.test)) == (1437, 360)  # scikit-learn's 1797 digits, 80/20
    assert torch.equal(data.train.images[:, 0], data.train.images[:, 2])  # grey repeated to 3 channels
    per_class = torch.bincount(data.test.labels, minlength=10)
    assert int(per_class.min()) >= 35 and int(per_class.max()) <= 37  # stratified: ~20% of each ~180
    assert abs(float(data.train.images.mean())) < 1e-4
    assert float(data.train.images.std()) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="size"):
        train_data.digits(8)


# ------------------------------------------------------------------------------------------
# arms
# ------------------------------------------------------------------------------------------

def test_default_arms_are_registered_and_selection_errors_name_arms():
    assert [a.name for a in select_arms(",".join(DEFAULT_ARMS))] == list(DEFAULT_ARMS)
    assert [a.name for a in select_arms("all")] == list(ARMS)
    with pytest.raises(ValueError, match="arms: unknown"):
        select_arms("none,bogus")
    with pytest.raises(ValueError, match="arms: .*twice"):
        select_arms("none,none")
    with pytest.raises(ValueError, match="arm: 'none' is already registered"):
        register_arm(Arm("none", "again", ARMS["none"].build))
    with pytest.raises(TypeError, match="arm"):
        register_arm("none")


@pytest.mark.parametrize("name, smoothing", [("none", 0.0), ("mixup-source", 0.0), ("timm", 0.1), ("cutmix", 0.0),
                                             ("fmix", 0.0), ("saliencymix", 0.0), ("ricap", 0.0),
                                             ("kway-mixup", 0.0), ("resizemix", 0.0)])
def test_every_arm_returns_probability_targets(name, smoothing):
    setup = ARMS[name].build(5, torch.Generator().manual_seed(0))
    x = torch.randn(8, 3, 16, 16)
    y = torch.arange(8) % 5
    mixed, targets = setup.mix(x.clone(), y)
    assert mixed.shape == x.shape and targets.shape == (8, 5) and targets.dtype == torch.float32
    assert torch.allclose(targets.sum(1), torch.ones(8))
    assert float(targets.min()) >= smoothing / 5 - 1e-7  # timm's off value, eps / K


def _probe(inner: str, sampled: list, trained_on: list):
    """An arm that mixes like ``inner``, recording each batch it was given and what the model trained on."""
    def build(num_classes, generator):
        inner_mix = ARMS[inner].build(num_classes, generator).mix

        def mix(x, y):
            sampled.append(x.clone())
            return inner_mix(x, y)

        def wrap(model):
            model.register_forward_pre_hook(
                lambda module, args: trained_on.append(args[0].detach().clone()) if module.training else None)
            return model
        return ArmSetup(mix, wrap)
    return Arm(f"probe-{inner}", f"records {inner}'s training inputs", build)


@pytest.mark.parametrize("inner, low, high", [
    ("none", 0.0, 0.0),
    # prob=0.2 per image over 2 x 256 images: 0.2 ± 5 standard deviations (0.018 each)
    ("mixup-source", 0.11, 0.29),
])
def test_the_model_trains_on_what_the_arm_mixed(inner, low, high):
    data = train_data.synthetic(n_train=256, n_test=32)
    sampled, trained_on = [], []
    runs = [train.train_run(_probe(inner, sampled, trained_on), data, seed, epochs=1, batch_size=128)
            for seed in (0, 1)]
    before, inputs = torch.cat(sampled), torch.cat(trained_on)
    assert inputs.shape == before.shape == (512, 3, 16, 16)
    changed = int((inputs != before).flatten(1).any(1).sum())
    assert low <= changed / 512 <= high, f"{inner}: {changed} of 512 training inputs were changed"
    assert changed == sum(r.mixed_images for r in runs)  # the loop's own count agrees
    assert sum(r.trained_images for r in runs) == 512
    # a changed input is no training image at all, or (λ = 0 in float32) exactly its flip partner B-1-i
    originals = {row.numpy().tobytes() for row in data.train.images}
    assert all(row.numpy().tobytes() in originals for row in before)
    novel = sum(row.numpy().tobytes() not in originals for row in inputs)
    became_partner = sum(int(((got != seen) & (got == seen.flip(0))).flatten(1).all(1).sum())
                         for got, seen in zip(trained_on, sampled))
    assert novel + became_partner == changed


def test_a_run_learns_the_synthetic_classes():
    data = train_data.synthetic(n_train=512, n_test=128)  # 4 classes: chance is 25%
    run = train.train_run(ARMS["none"], data, 0, epochs=3, batch_size=64)
    assert run.final.test_accuracy >= 0.75, [e.test_accuracy for e in run.epochs]
    assert run.epochs[-1].train_loss < run.epochs[0].train_loss
    assert 0 < run.mix_seconds < run.step_seconds


def test_experiment_arguments_are_checked():
    data = train_data.synthetic(n_train=16, n_test=8)
    for name, kwargs in [("seeds", dict(seeds=0)), ("epochs", dict(epochs=0)), ("batch_size", dict(batch_size=0)),
                         ("lr", dict(lr=0.0))]:
        full = dict(seeds=1, epochs=1) | kwargs
        with pytest.raises(ValueError, match=name):
            train.run_experiment(data, [ARMS["none"]], **full)
    with pytest.raises(ValueError, match="arms"):
        train.run_experiment(data, [], seeds=1, epochs=1)


# ------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------

def test_train_command_smoke_run(tmp_path, capsys):
    out = tmp_path / "run"
    threads = torch.get_num_threads()
    code = cli.main(["train", "--data", "synthetic", "--seeds", "2", "--epochs", "1", "--no-tqdm", "--out", str(out)])
    assert code == 0
    assert torch.get_num_threads() == threads  # --threads 1 (the default) holds for the run only
    printed = capsys.readouterr()
    results = json.loads((out / "results.json").read_text())
    arms = {a["arm"]: a for a in results["arms"]}
    assert list(arms) == list(DEFAULT_ARMS)
    for name, arm in arms.items():
        assert arm["seeds"] == 2
        for field in ("accuracy", "ece"):
            mean, sd = arm[field]
            assert 0.0 <= mean <= 1.0 and sd is not None and sd >= 0.0, (name, field, arm[field])
        assert 0.0 <= arm["mix_time_share"] < 1.0 and arm["seconds_per_run"] > 0
        assert len(arm["accuracy_per_epoch"]) == 1
        assert f"| {name} |" in printed.out
    assert arms["none"]["mixed_share"] == 0.0
    assert 0.05 < arms["mixup-source"]["mixed_share"] < 0.4
    assert arms["timm"]["mixed_share"] > 0.5 and arms["cutmix"]["mixed_share"] > 0.5
    assert len(results["runs"]) == 2 * len(DEFAULT_ARMS)
    assert results["command"].startswith("fastmix train --data synthetic")
    assert "1 torch thread(s)" in results["machine"]
    table = (out / "table.md").read_text()
    assert "| arm | test accuracy % | ECE % (15 bins) |" in table and "command: fastmix train" in table
    for name in DEFAULT_ARMS:
        assert f"{name} seed 1 epoch 1/1:" in printed.err  # plain progress lines without tqdm


def test_train_command_rejects_bad_arguments_naming_them(capsys, tmp_path):
    assert cli.main(["train", "--arms", "nope"]) == 2
    assert "--arms: unknown arm(s) ['nope']" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(tmp_path / "nowhere")]) == 2
    assert "--data: expected 'digits', 'synthetic', 'cifar10' or the folder" in capsys.readouterr().err
    for flag, value in [("--seeds", "0"), ("--epochs", "-1"), ("--batch-size", "0"), ("--lr", "0"),
                        ("--threads", "-1")]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["train", flag, value])
        assert exit_info.value.code == 2
        assert f"argument {flag}: expected a " in capsys.readouterr().err


def test_train_command_lists_the_arms(capsys):
    assert cli.main(["train", "--list-arms"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in DEFAULT_ARMS)


def _summary_rows():
    runs = [train_report.RunRecord("a", s, [train_report.EpochRecord(e, 1.0, 0.3 + 0.1 * e + 0.01 * s, 0.1, 1.0)
                                            for e in range(3)], 0.1, 1.0, 5, 10) for s in range(2)]
    runs += [train_report.RunRecord("b", 0, [train_report.EpochRecord(e, 1.0, 0.5, 0.2, 2.0) for e in range(3)],
                                    0.0, 1.0, 0, 10)]
    return train_report.summarise(runs, {"a": "arm a"})


def test_summary_is_mean_and_sample_sd_over_seeds():
    a, b = _summary_rows()
    assert a.accuracy[0] == pytest.approx(0.505) and a.accuracy[1] == pytest.approx(0.01 / 2 ** 0.5)
    assert a.accuracy_per_epoch == pytest.approx([0.305, 0.405, 0.505])
    assert (a.mixed_share, a.mix_time_share, a.seconds_per_run) == (0.5, pytest.approx(0.1), 3.0)
    assert b.accuracy == (0.5, None)  # one seed: no spread
    assert "| b | 50.0 | 20.0 | 0% |" in train_report.format_table([a, b])


def test_plot_draws_every_arm(tmp_path):
    image_module = pytest.importorskip("PIL.Image", reason="the plot needs Pillow (the train extra)")
    rows = _summary_rows()
    assert train_report.write_plot(rows, tmp_path / "p.png", "title")
    image = image_module.open(tmp_path / "p.png").convert("RGB")
    assert image.size == (720, 440)
    colours = {c for _, c in image.getcolors(maxcolors=1 << 16)}
    assert train_report.PALETTE[0] in colours and train_report.PALETTE[1] in colours


def test_without_pillow_the_command_says_how_to_get_the_plot(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now raises ImportError
    assert not train_report.write_plot(_summary_rows(), tmp_path / "p.png", "title")
    assert not (tmp_path / "p.png").exists()
    code = cli.main(["train", "--data", "synthetic", "--arms", "none", "--seeds", "1", "--no-tqdm",
                     "--out", str(tmp_path / "run")])
    assert code == 0
    assert 'no plot: Pillow is missing (pip install "fastmix[train]")' in capsys.readouterr().out


def test_progress_bar_with_tqdm():
    pytest.importorskip("tqdm", reason="the progress bar needs tqdm (the train extra)")
    import io
    stream = io.StringIO()
    progress = train.Progress(use_tqdm=True, stream=stream)
    progress.start("none seed 0", total_steps=4)
    for _ in range(4):
        progress.step()
    progress.epoch(train_report.EpochRecord(1, 0.5, 0.75, 0.125, 1.0), epochs=1)
    progress.finish()
    shown = stream.getvalue()
    assert "none seed 0" in shown and "4/4" in shown and "test accuracy 75.0%" in shown


def test_progress_falls_back_to_plain_lines_without_tqdm(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    progress = train.Progress()
    assert not progress.use_tqdm
    progress.start("cutmix seed 1", total_steps=2)
    progress.step()
    progress.epoch(train_report.EpochRecord(2, 0.25, 0.5, 0.0625, 3.0), epochs=5)
    progress.finish()
    assert capsys.readouterr().err == ("cutmix seed 1 epoch 2/5: loss 0.2500, test accuracy 50.0%, ECE 6.2%, "
                                       "3.0 s\n")
