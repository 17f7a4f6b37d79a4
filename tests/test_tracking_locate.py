"""trackpy semantics of the compiled locate, ring refinement, and what is read from the image."""

import warnings

import numpy as np
import pandas as pd
import pytest
import tifffile

from cybloid.cli import main
from cybloid.tracking.auto import detect_polarity, diameter_for_sigma, estimate_sigma
from cybloid.tracking.locate import locate
from cybloid.tracking.ring import refine_brightfield_ring

tp = pytest.importorskip("trackpy")


def spots(shape, xy, sigma, peak, background, rng, dark=False):
    """Gaussian spots with Poisson noise (uint16); dark: subtracted from the background."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    img = np.zeros(shape)
    for x, y in xy:
        img += peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    img = background - img if dark else background + img
    return rng.poisson(np.clip(img, 0, None)).astype(np.uint16)


@pytest.fixture(scope="module")
def field():
    rng = np.random.default_rng(5)
    xy = rng.uniform(8, 152, (60, 2))
    return xy, spots((160, 160), xy, 1.8, 600, 200, rng), spots((160, 160), xy, 1.8, 150, 900, rng, dark=True)


def same_features(a: pd.DataFrame, b: pd.DataFrame, tol_px=1e-6):
    assert len(a) == len(b) > 0
    a = a.sort_values(["y", "x"]).reset_index(drop=True)
    b = b.sort_values(["y", "x"]).reset_index(drop=True)
    np.testing.assert_allclose(a[["y", "x"]].to_numpy(), b[["y", "x"]].to_numpy(), atol=tol_px)
    for c in ("mass", "size", "ecc", "signal", "raw_mass"):
        np.testing.assert_allclose(a[c].to_numpy(), b[c].to_numpy(), rtol=1e-5, atol=1e-9, err_msg=c)
    # ep: trackpy takes the noise of float32 images in float32 sums
    np.testing.assert_allclose(a["ep"].to_numpy(), b["ep"].to_numpy(), rtol=2e-3, err_msg="ep")


@pytest.mark.parametrize("opts", [
    dict(diameter=9),
    dict(diameter=9, minmass=800),
    dict(diameter=7, separation=4, percentile=30),
    dict(diameter=11, maxsize=2.6, noise_size=1.5, smoothing_size=15),
    dict(diameter=9, topn=10, threshold=5),
])
def test_locate_is_trackpy_locate(field, opts):
    _, img, _ = field
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = tp.locate(img, **opts)
    same_features(locate(img, **opts), ref)


def test_invert_and_float_images_as_trackpy(field):
    _, _, dark = field
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same_features(locate(dark, 9, minmass=100, invert=True), tp.locate(dark, 9, minmass=100, invert=True))
        f = (dark / 1000.0).astype(np.float32)
        same_features(locate(f, 9, invert=True), tp.locate(f, 9, invert=True))
        u8 = (dark // 4).astype(np.uint8)
        same_features(locate(u8, 9, minmass=20, invert=True), tp.locate(u8, 9, minmass=20, invert=True))


def brightfield_image(rng, centres, ring_r=7.0):
    """Bright core, dark ring, weak halo on a bright, noisy background (uint8)."""
    yy, xx = np.mgrid[0:120, 0:120]
    img = np.full((120, 120), 140.0)
    for x, y in centres:
        r = np.hypot(xx - x, yy - y)
        img += 90 * np.exp(-r**2 / (2 * 2.5**2)) - 55 * np.exp(-((r - ring_r) ** 2) / (2 * 1.2**2))
        img += 8 * np.exp(-((r - ring_r - 3.5) ** 2) / 4.0)
    return np.clip(img + rng.normal(0, 2.0, img.shape), 0, 255).astype(np.uint8)


def test_ring_refinement_is_locate_brightfield_ring():
    rng = np.random.default_rng(2)
    centres = np.array([[30.3, 28.6], [85.7, 40.2], [50.1, 90.8]])
    img = brightfield_image(rng, centres)
    start = centres + rng.uniform(-1.5, 1.5, centres.shape)
    ours = refine_brightfield_ring(img, start, 15)
    prev = pd.DataFrame({"x": start[:, 0], "y": start[:, 1], "particle": np.arange(3)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = tp.locate_brightfield_ring(img, 15, previous_coords=prev, processes=1)
    assert len(ours) == len(ref) == 3
    ref = ref.sort_values("particle")
    np.testing.assert_allclose(ours[:, 0], ref["x"], atol=1e-3)
    np.testing.assert_allclose(ours[:, 1], ref["y"], atol=1e-3)
    np.testing.assert_allclose(ours[:, 2], ref["r"], atol=1e-3)
    # and the ring centres are near the particles' centres (trackpy's edge offsets are whole pixels)
    err = np.hypot(*(ours[:, :2] - centres).T)
    assert np.max(err) < 0.3 and np.all(err < np.hypot(*(start - centres).T))


def test_polarity_and_size_are_read_from_the_image(field):
    xy, img, dark = field
    assert detect_polarity(img).kind == "bright"
    assert detect_polarity(dark).kind == "dark"
    rng = np.random.default_rng(3)
    assert detect_polarity(brightfield_image(rng, [[40, 40], [80, 70], [30, 90]])).kind == "mixed"
    s = estimate_sigma(img)
    assert s == pytest.approx(1.8, rel=0.1)
    assert estimate_sigma(dark, invert=True) == pytest.approx(1.8, rel=0.15)
    assert diameter_for_sigma(2.0) == 11 and diameter_for_sigma(0.5) == 5
    assert estimate_sigma(rng.poisson(100, (64, 64)).astype(np.uint16)) is None


@pytest.fixture(scope="module")
def twelve_spots(tmp_path_factory):
    """20 frames of 12 Gaussian spots (sigma 2 px, peak 800 on 100): 8 alone, 2 pairs 2 px apart."""
    rng = np.random.default_rng(11)
    alone = np.array([[20, 20], [60, 22], [100, 18], [20, 60], [100, 60], [22, 100], [60, 100], [102, 104]], float)
    pairs = np.array([[59, 58], [61, 58], [40, 80], [40, 82]], float)
    truth = np.concatenate([alone, pairs])
    frames, centres = [], []
    for _ in range(20):
        t = truth + rng.normal(0, 0.3, truth.shape)
        frames.append(spots((124, 124), t, 2.0, 800, 100, rng))
        centres.append(np.concatenate([t[:8], (t[8:10].mean(0, keepdims=True)), t[10:12].mean(0, keepdims=True)]))
    path = tmp_path_factory.mktemp("spots") / "spots.tif"
    tifffile.imwrite(path, np.stack(frames))
    return path, np.stack(centres)


def test_twelve_spot_stack_with_default_options(twelve_spots, tmp_path, capsys):
    path, centres = twelve_spots
    out = tmp_path / "t.csv"
    assert main(["track", str(path), "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "--diameter 11" in err  # measured and said
    assert abs(float(err.split("sigma ")[1].split()[0]) - 2.0) < 0.1
    df = pd.read_csv(out)
    assert {"y", "x", "mass", "size", "ecc", "signal", "raw_mass", "ep", "frame", "particle",
            "quality"} <= set(df.columns)
    assert "flags" not in df.columns
    for f, g in df.groupby("frame"):
        assert len(g) == 10  # the separable spots, every frame
        gx, gy = g["x"].to_numpy(), g["y"].to_numpy()
        d = np.hypot(gx[:, None] - centres[f][None, :, 0], gy[:, None] - centres[f][None, :, 1])
        assert np.all(d.min(axis=1) < 0.5) and len(set(d.argmin(axis=1))) == 10
    assert df["particle"].nunique() == 10  # linked across all 20 frames
    assert (df.groupby("particle").size() == 20).all()


def test_dark_particles_are_inverted_with_a_message(field, tmp_path, capsys):
    _, _, dark = field
    path = tmp_path / "dark.tif"
    tifffile.imwrite(path, np.stack([dark, dark]))
    out = tmp_path / "t.csv"
    assert main(["track", str(path), "--out", str(out), "--diameter", "9", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "dark particles on a bright background" in err and "--invert" in err
    df = pd.read_csv(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = tp.locate(dark, 9, invert=True, minmass=df["mass"].min() - 1)
    assert len(df[df["frame"] == 0]) == len(ref)


def test_empty_and_noise_floor_results_are_warnings(tmp_path, capsys):
    rng = np.random.default_rng(4)
    path = tmp_path / "noise.tif"
    tifffile.imwrite(path, rng.poisson(100, (3, 64, 64)).astype(np.uint16))
    out = tmp_path / "t.csv"
    assert main(["track", str(path), "--out", str(out), "--diameter", "7", "--minmass", "1e6", "--no-progress"]) == 0
    assert "warning: 0 features in 3 frames (diameter 7, minmass 1e+06" in capsys.readouterr().err
    assert main(["track", str(path), "--out", str(out), "--diameter", "7", "--minmass", "0", "--no-progress"]) == 0
    assert "warning: features are at the noise floor" in capsys.readouterr().err
    assert main(["track", str(path), "--out", str(out), "--no-progress"]) == 2
    assert "cannot estimate the particle size" in capsys.readouterr().err


def test_compare_trackpy_prints_agreement(twelve_spots, tmp_path, capsys):
    path, _ = twelve_spots
    out = tmp_path / "t.csv"
    assert main(["track", str(path), "--out", str(out), "--diameter", "11", "--minmass", "500", "--search-range", "4",
                 "--compare-trackpy", "--compare-frames", "6", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "compared with trackpy on 6 frames" in text
    assert "matched within 0.5 px: 100.00 % of trackpy's, 100.00 % of cybloid's" in text
    assert "RMS position difference 0.0000 px" in text
    assert "trajectories        trackpy 10 (10 of >= 3 frames), cybloid 10 (10)" in text
