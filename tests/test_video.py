"""Video files as data (--data clip.mp4, --val-data clip.mp4): real PyAV decoding of clips the tests encode."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import av
import numpy as np
import pytest
from tiny import NO_FINALISTS, run_nas

from nas.errors import UsageError
from nas.training.images import load_folders

N_FRAMES = 20


def encode_clip(path: Path, n: int = N_FRAMES, h: int = 64, w: int = 96) -> None:
    """A clip whose red level rises 10 per frame while a texture in green and blue pans 3 pixels per frame
    (MPEG-4 part 2)."""
    texture = (np.random.default_rng(0).random((h, 2 * w)) * 255).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"qscale": "2"}
        for i in range(n):
            img = np.zeros((h, w, 3), np.uint8)
            img[:, :, 0] = 10 * i
            img[:, :, 1] = texture[:, 3 * i:3 * i + w]
            img[:, :, 2] = 255 - texture[:, 3 * i:3 * i + w]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    encode_clip(path)
    return path


def red(images: list) -> list[float]:
    return [float(im.pixels[0].float().mean()) for im in images]


def test_a_clip_splits_like_a_folder_in_playing_order(clip: Path) -> None:
    train, val = load_folders(clip, None)
    assert [im.name for im in val] == ["clip.mp4#000018", "clip.mp4#000019"]  # the last 10 %: a contiguous tail
    assert len(train) == N_FRAMES - 2 and train[0].name == "clip.mp4#000000"
    levels = red(train + val)
    assert all(b > a for a, b in itertools.pairwise(levels)), levels  # decoded in order
    assert abs(levels[0] - 0) < 16 and abs(levels[-1] - 10 * (N_FRAMES - 1)) < 16  # 4:2:0 chroma blurs the texture in
    assert tuple(train[0].pixels.shape) == (3, 64, 96)


def test_a_validation_clip_gives_its_first_frames_in_order(clip: Path) -> None:
    _, val = load_folders(None, clip, val_sequence=True)
    assert [im.name for im in val] == [f"clip.mp4#{i:06d}" for i in range(16)]


def test_a_file_that_is_not_a_video_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(UsageError, match="cannot read this video") as err:
        load_folders(bad, None)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_val_sequence_measures_flicker_on_a_real_clip(clip: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_nas("search", "--input-size", "32x48", "--budget-ms", "50", "--trials", "1", "--train-steps", "50",
                   "--backend", "onnxruntime", "--no-export", "--no-report", *NO_FINALISTS,
                   "--val-data", str(clip), "--val-sequence", "--run-dir", str(run_dir),
                   "--latency-db", str(tmp_path / "lat.db"), "--json")
    assert proc.returncode == 0, proc.stderr
    best = json.loads(proc.stdout)["best"]
    assert best["temporal_psnr_db"] is not None and np.isfinite(best["temporal_psnr_db"])
    data = json.loads((run_dir / "run.json").read_text())["data"]
    assert data["val_sequence"] and data["val"][:2] == ["clip.mp4#000000", "clip.mp4#000001"]
