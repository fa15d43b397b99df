"""FID/KID: pytorch-fid agreement, offline Inception loading, caching, modalities, the CLI."""

from __future__ import annotations

import json
import socket
import warnings

import cv2
import numpy as np
import pytest
import torch

from synthdata.commands import evaluate_fid
from synthdata.core.contract import ClassInfo
from synthdata.core.palette import default_palette
from synthdata.metrics import fid, inception
from synthdata.metrics.sources import open_source


def _images(n: int, *, shift: int = 0, seed: int = 0, size: tuple[int, int] = (32, 64)) -> list[dict]:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 200, (n, *size, 3)) + shift
    return [{"image": np.clip(p, 0, 255).astype(np.uint8), "meta": {"id": f"s{i}"}} for i, p in enumerate(pixels)]


@pytest.fixture
def extractor():
    """A small randomly initialised conv net: (B, 3, H, W) -> (B, 8)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.Tanh(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    ).eval()
    return net


@pytest.fixture
def fid_weights(tmp_path):
    """The FID Inception architecture, randomly initialised, saved like the real weights file."""
    torch.manual_seed(0)
    net = inception.fid_inception_architecture()
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    path = tmp_path / inception.WEIGHTS_FILENAME
    torch.save(state, path)
    return path, net


@pytest.fixture
def no_network(monkeypatch):
    """Any download attempt or socket connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    import pytorch_fid.inception

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(pytorch_fid.inception, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_frechet_distance_equals_pytorch_fid():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(60, 6)), rng.normal(0.5, 1.3, size=(50, 6))
    mu1, s1 = fid.feature_statistics(a)
    mu2, s2 = fid.feature_statistics(b)
    expected = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert expected > 0.1


def test_fid_of_a_set_with_itself_is_zero_and_shift_is_positive(extractor):
    real = open_source(_images(24))
    same = fid.compute_fid(real, real, extractor, kid_subsets=10, kid_subset_size=12)
    shifted = fid.compute_fid(real, open_source(_images(24, shift=60)), extractor, kid_subsets=10, kid_subset_size=12)
    assert abs(same["fid"]) < 1e-6
    assert shifted["fid"] > 1e-3
    assert shifted["kid_mean"] > 0
    assert shifted["num_real"] == shifted["num_fake"] == 24


def test_kid_is_unbiased_for_one_distribution():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    same_mean, same_std = fid.kernel_inception_distance(a, b, subsets=20, subset_size=100)
    diff_mean, _ = fid.kernel_inception_distance(a, b + 0.5, subsets=20, subset_size=100)
    assert abs(same_mean) < 3 * same_std + 1e-3
    assert diff_mean > 20 * abs(same_mean)
    with pytest.raises(ValueError, match="at least 2"):
        fid.kernel_inception_distance(a[:1], b[:1])


def test_few_samples_warn_and_suggest_kid(extractor):
    src = open_source(_images(5))
    with pytest.warns(UserWarning, match="KID"):
        fid.compute_fid(src, open_source(_images(5, seed=3)), extractor, kid_subsets=2)


def test_mixed_sizes_are_batched_apart_and_warned():
    seen = []

    def record(x):
        seen.append(tuple(x.shape))
        return x.mean((2, 3))

    samples = _images(3) + _images(2, size=(16, 32))
    with pytest.warns(UserWarning, match="299x299"):
        feats = fid.extract_features(samples, record, batch_size=8)
    assert feats.shape == (5, 3)
    assert seen == [(3, 3, 32, 64), (2, 3, 16, 32)]


def test_layout_and_depth_become_three_channel_pictures():
    classes = ClassInfo(("a", "b"), default_palette(2), 255)
    layout = np.array([[0, 1], [255, 1]], dtype=np.uint8)
    x = fid.sample_to_tensor({"layout": layout}, "layout", classes)
    assert x.shape == (3, 2, 2)
    assert torch.allclose(x[:, 0, 1] * 255, torch.tensor(default_palette(2)[1], dtype=torch.float32))
    assert x[:, 1, 0].abs().sum() == 0  # ignore is black
    depth = np.array([[2.0, 4.0], [0.0, np.nan]], dtype=np.float32)
    d = fid.sample_to_tensor({"depth": depth}, "depth", None)
    assert torch.equal(d[0], d[2])
    assert d[0].tolist() == [[0.0, 1.0], [0.0, 0.0]]


def test_real_statistics_are_cached(extractor, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for s in _images(10):
        cv2.imwrite(str(folder / f"{s['meta']['id']}.png"), s["image"][..., ::-1])
    real = open_source(str(folder))
    kwargs = dict(extractor_id="tiny", cache_dir=tmp_path / "cache")
    first = fid.source_features(real, extractor, **kwargs)
    second = fid.source_features(real, extractor, **kwargs)
    assert not first["cached"] and second["cached"] and first["cache"] == second["cache"]
    np.testing.assert_allclose(first["mu"], second["mu"])
    other = fid.source_features(real, extractor, count=5, **kwargs)
    assert not other["cached"] and other["count"] == 5
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


def test_missing_weights_stop_with_the_file_name(tmp_path, monkeypatch, no_network, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(inception.FIDWeightsError, match=inception.WEIGHTS_FILENAME):
        inception.load_inception(None)
    code = evaluate_fid.main(["real=recipe:val", "fake=recipe:val", f"out={tmp_path / 'r'}"])
    err = capsys.readouterr().err
    assert code == 2
    assert inception.WEIGHTS_FILENAME in err and "eval.fid_weights" in err
    assert not (tmp_path / "r").exists()


def test_wrong_weights_file_is_named(tmp_path, no_network):
    bad = tmp_path / "bad.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(inception.FIDWeightsError, match="bad.pth"):
        inception.load_inception(bad)


def test_inception_features_match_pytorch_fid(fid_weights, monkeypatch, no_network):
    import pytorch_fid.inception as pf

    _, net = fid_weights
    monkeypatch.setattr(pf, "fid_inception_v3", lambda: net)  # their wrapper around our weights
    reference = pf.InceptionV3([0]).eval()
    ours = inception.FIDInception(net, dims=64).eval()
    x = torch.rand(2, 3, 32, 64)
    with torch.no_grad():
        expected = torch.nn.functional.adaptive_avg_pool2d(reference(x)[0], 1).flatten(1)
        torch.testing.assert_close(ours(x), expected)


def test_cli_with_local_weights_writes_a_report(fid_weights, tmp_path, no_network, capsys):
    path, _ = fid_weights
    folders = []
    for name, shift in (("real", 0), ("fake", 50)):
        folder = tmp_path / name
        folder.mkdir()
        for s in _images(4, shift=shift, seed=shift):
            cv2.imwrite(str(folder / f"{s['meta']['id']}.png"), s["image"][..., ::-1])
        folders.append(folder)
    cv2.imwrite(str(folders[1] / "odd.png"), np.zeros((16, 16, 3), np.uint8))  # a mixed size
    args = [f"real={folders[0]}", f"fake={folders[1]}", f"eval.fid_weights={path}", "eval.fid_dims=64",
            "eval.kid_subsets=3", f"out={tmp_path / 'report'}", f"cache={tmp_path / 'cache'}", "device=cpu"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert evaluate_fid.main(args) == 0
    assert any("mixed" in str(w.message) for w in caught)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["metrics"]["fid"] > 0 and report["metrics"]["num_fake"] == 5
    assert evaluate_fid.main(args) == 0
    assert "real cached" in capsys.readouterr().out
    assert "| fid |" in (tmp_path / "report" / "report.md").read_text()


def test_layout_fid_from_shards_through_the_evaluate_command(fid_weights, tmp_path, no_network):
    from synthdata.data.shard_writer import ShardWriter
    from synthdata.evaluate import main as evaluate

    classes = ClassInfo(("road", "car", "sky"), default_palette(3), 255)
    rng = np.random.default_rng(0)
    for name, top in (("real", 3), ("fake", 2)):  # the fake side never draws sky
        samples = [{"image": np.zeros((32, 64, 3), np.uint8), "layout": rng.integers(0, top, (32, 64)).astype(np.uint8),
                    "meta": {"id": f"{name}{i}"}} for i in range(4)]
        with ShardWriter(tmp_path / name, prefix="t", shard_size=4, classes=classes, recipe={"name": "t"},
                         depth_scale=0.001) as writer:
            writer.write_shard(0, samples)
            writer.finalize_manifest([0])
    args = ["fid", f"real={tmp_path / 'real'}", f"fake={tmp_path / 'fake'}", "modality=layout", "cache=off",
            f"eval.fid_weights={fid_weights[0]}", "eval.fid_dims=64", "eval.kid_subsets=2", f"out={tmp_path / 'r'}"]
    with pytest.warns(UserWarning, match="KID"):
        assert evaluate(args) == 0
    metrics = json.loads((tmp_path / "r" / "report.json").read_text())["metrics"]
    assert metrics["modality"] == "layout" and metrics["fid"] > 0 and metrics["real_cache"] is None
