"""``cybloid track``: synthetic stacks from the simulator tracked back to ground truth; bad input."""

import math

import numpy as np
import pandas as pd
import pytest
import tifffile

from cybloid.cli import main
from cybloid.lab import open_lab
from cybloid.tracking.video import VideoError, VideoSource

N_FRAMES = 12


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A TIFF stack of simulated frames and the true positions (px) of every frame."""
    lab = open_lab(seed=21, overrides={"camera.width_px": 96, "camera.height_px": 96, "particles.count": 6})
    frames = [lab.camera.grab() for _ in range(N_FRAMES)]
    path = tmp_path_factory.mktemp("stack") / "movie.tif"
    tifffile.imwrite(path, np.stack([f.image for f in frames]))
    truth = np.stack([f.truth["positions_um"] for f in frames]) / lab.profile.camera.pixel_size_um
    return path, truth, np.stack([f.image for f in frames])


def check_against_truth(df: pd.DataFrame, truth: np.ndarray, max_rms: float) -> None:
    assert set(df["frame"]) == set(range(len(truth)))
    owner = {}
    sq = []
    for frame, g in df.groupby("frame"):
        t = truth[frame]
        xy = g[["x", "y"]].to_numpy()
        d = np.hypot(xy[:, None, 0] - t[None, :, 0], xy[:, None, 1] - t[None, :, 1])
        j = d.argmin(axis=1)
        assert np.all(d[np.arange(len(j)), j] < 1.0)
        assert len(set(j)) == len(j) == len(t)  # every particle once
        for pid, k in zip(g["particle"], j):
            assert owner.setdefault(int(pid), int(k)) == k  # identities kept
        inner = (g["quality"].to_numpy() & 8) == 0
        sq.append(np.sum((xy[inner] - t[j[inner]]) ** 2, axis=1))
    assert len(owner) == truth.shape[1]
    assert math.sqrt(np.concatenate(sq).mean()) < max_rms


def test_track_tiff_stack_to_csv_reproduces_truth(stack, tmp_path, capsys):
    path, truth, _ = stack
    out = tmp_path / "tracks.csv"
    assert main(["track", str(path), "--out", str(out), "--tracker", "fast", "--diameter", "13", "--minmass", "3000",
                 "--no-progress"]) == 0
    df = pd.read_csv(out)
    assert list(df.columns[:5]) == ["frame", "particle", "x", "y", "mass"]
    check_against_truth(df, truth, 0.05)
    assert "6 particles" in capsys.readouterr().out


def test_track_with_measured_width_and_auto_minmass_to_parquet(stack, tmp_path):
    path, truth, _ = stack
    out = tmp_path / "tracks.parquet"
    assert main(["track", str(path), "--out", str(out), "--tracker", "fast", "--diameter", "13", "--no-progress"]) == 0
    df = pd.read_parquet(out)
    check_against_truth(df, truth, 0.05)
    # trackpy-compatible: linking columns and positions usable directly
    assert {"frame", "particle", "x", "y", "mass", "size", "ecc"} <= set(df.columns)


def test_track_video_file(stack, tmp_path):
    cv2 = pytest.importorskip("cv2")
    _, truth, images = stack
    path = tmp_path / "movie.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 10, images.shape[:0:-1], isColor=False)
    if not w.isOpened():
        pytest.skip("no lossless video codec in this OpenCV build")
    for img in images:
        w.write(np.clip(img / 10.0, 0, 255).astype(np.uint8))
    w.release()
    with VideoSource(path) as src:
        assert len(src) == N_FRAMES
    out = tmp_path / "tracks.csv"
    assert main(["track", str(path), "--out", str(out), "--tracker", "fast", "--diameter", "13", "--minmass", "2000",
                 "--no-progress"]) == 0
    check_against_truth(pd.read_csv(out), truth, 0.08)  # 8-bit quantisation adds a little error


def test_bad_inputs_give_one_line_errors(stack, tmp_path, capsys):
    path, _, _ = stack
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"this is not a tiff file at all")
    notvideo = tmp_path / "garbage.avi"
    notvideo.write_bytes(b"\x00\x01 nothing")
    empty = tmp_path / "empty.tif"
    with pytest.warns(UserWarning):
        tifffile.imwrite(empty, np.zeros((0, 16, 16), np.uint16))
    cases = [
        ([str(tmp_path / "missing.tif"), "--out", str(tmp_path / "a.csv")], "no such file"),
        ([str(garbage), "--out", str(tmp_path / "a.csv")], "not a readable TIFF"),
        ([str(notvideo), "--out", str(tmp_path / "a.csv")], "not a readable video"),
        ([str(empty), "--out", str(tmp_path / "a.csv")], "no frames"),
        ([str(path), "--out", str(tmp_path / "a.xlsx")], ".parquet or .csv"),
        ([str(path), "--out", str(tmp_path / "nodir" / "a.csv")], "does not exist"),
        ([str(path), "--out", str(tmp_path / "a.csv"), "--diameter", "12"], "odd"),
    ]
    for argv, message in cases:
        assert main(["track", *argv, "--no-progress"]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_video_source_rejects_a_directory_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(VideoError, match="directory without image files"):
        VideoSource(tmp_path)
