"""Video files as data (``--data clip.mp4``, ``--val-data clip.mp4``): frames decoded with PyAV, in order.

A clip is listed as one item per frame (``clip.mp4#000123``: names sort in playing order, so a clip split
like a folder keeps its last frames for validation, and ``--val-sequence`` measures flicker on real
consecutive frames); the frames chosen are then decoded in one pass. Frames are converted to RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nas.errors import UsageError

if TYPE_CHECKING:
    from nas.training.images import Image8

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")


@dataclass(frozen=True)
class VideoFrame:
    """Frame ``index`` (0-based, in decoding order) of the clip at ``path``."""

    path: Path
    index: int

    @property
    def name(self) -> str:
        return f"{self.path.name}#{self.index:06d}"


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def _fail(flag: str, path: Path, exc: Exception) -> UsageError:
    return UsageError(f"{flag} {path}: cannot read this video ({type(exc).__name__}: {str(exc)[:160]}): "
                      "re-encode it (e.g. H.264 in .mp4) or pass a folder of frames")


def list_frames(path: Path, flag: str) -> list[VideoFrame]:
    """One item per frame of the clip's first video stream (counted by demuxing: no decoding)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UsageError(f"{flag} {path}: holds no video stream: pass a video clip or a folder of frames")
            stream = container.streams.video[0]
            n = sum(1 for packet in container.demux(stream) if packet.size)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _fail(flag, path, exc) from None
    if n == 0:
        raise UsageError(f"{flag} {path}: the clip has no frames")
    return [VideoFrame(path, i) for i in range(n)]


def read_frames(frames: list[VideoFrame], flag: str) -> dict[VideoFrame, Image8]:
    """The chosen frames as RGB images, each clip decoded once, from its start up to its last chosen frame."""
    out: dict[VideoFrame, Image8] = {}
    if not frames:
        return out
    import av

    from nas.training.images import Image8, to_tensor

    for path in sorted({f.path for f in frames}):
        wanted = {f.index for f in frames if f.path == path}
        last = max(wanted)
        try:
            with av.open(str(path)) as container:
                for i, frame in enumerate(container.decode(video=0)):
                    if i in wanted:
                        item = VideoFrame(path, i)
                        out[item] = Image8(item.name, to_tensor(frame.to_ndarray(format="rgb24")))
                    if i >= last:
                        break
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise _fail(flag, path, exc) from None
        missing = wanted - {f.index for f in out if f.path == path}
        if missing:
            raise UsageError(f"{flag} {path}: frame {min(missing)} could not be decoded (the clip is truncated?)")
    return out
