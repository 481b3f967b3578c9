"""Sensor URIs -> source specs (plain Python; the GStreamer descriptions are built in `pipelines.source`).

Schemes: `v4l2:///dev/videoN[?format=YUY2|MJPEG|NV12|GRAY16_LE&width=&height=&fps=&telemetry=ROWS]`,
`csi://N` (nvarguscamerasrc, Jetson), `file:///path` (a video file, or a folder / printf pattern of numbered
image frames with `?fps=`), `rtsp://host/path` and `synthetic://?seed=S&fps=&frames=&width=&height=`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from ckd.errors import CKDError

SCHEMES = ("v4l2", "csi", "file", "rtsp", "synthetic")
ROLES = ("rgb", "tir")


@dataclass(frozen=True)
class SourceSpec:
    """One sensor: where it is, which role it plays and its options (all strings, as in the URI)."""

    uri: str
    role: str
    scheme: str
    location: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        """Live sources (cameras, network streams) are reconnected when they drop out."""
        if "live" in self.params:  # e.g. synthetic://?live=1 behaves like a camera (reconnects)
            return self.params["live"].lower() in ("1", "true", "yes")
        return self.scheme in ("v4l2", "csi", "rtsp")

    @property
    def recorded(self) -> bool:
        """A recorded clip (video file or image frames): replayed frame by frame unless `--realtime`."""
        return self.scheme == "file"

    @property
    def replayable(self) -> bool:
        """Whether its frames can be replayed one by one (a recorded clip, or a simulated sensor)."""
        return self.recorded or self.scheme == "synthetic"

    @property
    def frames_folder(self) -> bool:
        """Numbered image frames (a folder or a printf pattern) rather than a video file."""
        path = Path(self.location)
        return self.scheme == "file" and (path.is_dir() or "%" in path.name)

    @property
    def name(self) -> str:
        return f"{self.role} source {self.uri}"

    def number(self, key: str, default: float) -> float:
        try:
            return float(self.params.get(key, default))
        except ValueError:
            raise CKDError(f"{self.name}: option {key}={self.params[key]!r} is not a number") from None

    @property
    def out_format(self) -> str:
        """Pixel format a camera or video source delivers (image frames and synthetic sources: from the data).

        Thermal video files are delivered as RGB so that grey saved as 3 channels is recognised from the pixels.
        """
        if self.role == "rgb" or self.scheme == "file":
            return "RGB"
        if self.scheme == "synthetic" or self.params.get("format", "").upper() == "GRAY16_LE":
            return "GRAY16_LE"
        return "GRAY8"


def parse_uri(uri: str, role: str) -> SourceSpec:
    """Parse a sensor URI for role 'rgb' or 'tir'; CKDError on anything unknown."""
    if role not in ROLES:
        raise CKDError(f"unknown sensor role {role!r}; expected one of {', '.join(ROLES)}")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise CKDError(f"{role} source {uri!r}: unknown URI scheme {scheme or '(none)'!r}; use one of {SCHEMES}")
    params = {k.lower(): v for k, v in parse_qsl(parts.query, keep_blank_values=True)}
    if scheme == "csi":
        location = parts.netloc or parts.path.strip("/") or "0"
        if not location.isdigit():
            raise CKDError(f"{role} source {uri!r}: csi:// needs a sensor number, e.g. csi://0")
    elif scheme in ("file", "v4l2"):
        location = parts.netloc + parts.path
        if not location:
            raise CKDError(f"{role} source {uri!r}: no path after {scheme}://")
    elif scheme == "rtsp":
        own = ("latency",)
        rest = "&".join(f"{k}={v}" for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in own)
        location = f"rtsp://{parts.netloc}{parts.path}" + (f"?{rest}" if rest else "")
    else:
        location = ""
    spec = SourceSpec(uri=uri, role=role, scheme=scheme, location=location, params=params)
    if "format" in params and params["format"].upper() not in ("YUY2", "MJPEG", "NV12", "GRAY16_LE", "GRAY8"):
        raise CKDError(f"{spec.name}: unsupported format {params['format']!r} (YUY2, MJPEG, NV12, GRAY16_LE, GRAY8)")
    return spec
