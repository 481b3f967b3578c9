"""Sensor URIs -> source specs -> GStreamer launch descriptions (jetson-utils style, printable).

Schemes: `v4l2:///dev/videoN[?format=YUY2|MJPEG|NV12|GRAY16_LE&width=&height=&fps=&telemetry=ROWS]`,
`csi://N` (nvarguscamerasrc, Jetson), `file:///path` (video file, or a folder / printf pattern of JPEG/PNG
frames with `?fps=`), `rtsp://host/path` and `synthetic://?seed=S&fps=&frames=&width=&height=`.

Every description ends in `appsink name=sink max-buffers=1 drop=true`: the consumer only ever sees the newest
frame. RGB sources deliver `RGB`, thermal sources `GRAY16_LE` when the sensor is 16-bit raw, else `GRAY8`.
On a Jetson the NVIDIA elements (`nvvidconv`) are used when GStreamer has them, software elements elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from ckd.errors import CKDError

SCHEMES = ("v4l2", "csi", "file", "rtsp", "synthetic")
ROLES = ("rgb", "tir")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
_NUMBERED = re.compile(r"^(.*?)(\d+)(\.[A-Za-z]+)$")


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
    def name(self) -> str:
        return f"{self.role} source {self.uri}"

    def number(self, key: str, default: float) -> float:
        try:
            return float(self.params.get(key, default))
        except ValueError:
            raise CKDError(f"{self.name}: option {key}={self.params[key]!r} is not a number") from None

    @property
    def out_format(self) -> str:
        """Pixel format the appsink delivers."""
        if self.role == "rgb":
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


def has_element(name: str) -> bool:
    """Whether GStreamer on this machine has an element factory (e.g. NVIDIA's nvvidconv)."""
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    return Gst.ElementFactory.find(name) is not None


def _sink(spec: SourceSpec) -> str:
    return f"video/x-raw,format={spec.out_format} ! appsink name=sink max-buffers=1 drop=true sync=true"


def _size_caps(spec: SourceSpec) -> str:
    caps = ""
    for key in ("width", "height"):
        if key in spec.params:
            caps += f",{key}={int(spec.number(key, 0))}"
    if "fps" in spec.params:
        caps += f",framerate={_fraction(spec.number('fps', 30))}"
    return caps


def _fraction(fps: float) -> str:
    if fps <= 0:
        raise CKDError(f"frame rate must be positive, got {fps}")
    return f"{round(fps * 1000)}/1000"


def _convert(spec: SourceSpec, nvidia: bool) -> str:
    """Conversion chain from decoded video to the appsink format."""
    if nvidia and spec.out_format == "RGB":
        return "nvvidconv ! video/x-raw,format=BGRx ! videoconvert"
    return "videoconvert"


def image_sequence(folder: Path) -> tuple[str, int]:
    """printf pattern and first index of the numbered JPEG/PNG frames in a folder (dataset visible/, infrared/)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise CKDError(f"{folder}: no JPEG/PNG frames in this folder")
    m = _NUMBERED.match(files[0].name)
    if not m:
        raise CKDError(f"{folder}: frame names must end in a number, e.g. v000001.jpg (got {files[0].name})")
    prefix, digits, ext = m.groups()
    width = len(digits)
    pattern = f"{prefix}%0{width}d{ext}" if digits.startswith("0") else f"{prefix}%d{ext}"
    return str(folder / pattern), int(digits)


def launch_string(spec: SourceSpec, nvidia: bool | None = None) -> str:
    """The GStreamer description for a source (what `ckd run --print-pipeline` shows)."""
    if nvidia is None:
        nvidia = has_element("nvvidconv")
    p = spec.params
    if spec.scheme == "synthetic":
        w, h, fps = int(spec.number("width", 640)), int(spec.number("height", 480)), spec.number("fps", 30)
        caps = f"video/x-raw,format={spec.out_format},width={w},height={h},framerate={_fraction(fps)}"
        return f'appsrc name=src is-live=true format=time caps="{caps}" ! {_sink(spec)}'
    if spec.scheme == "v4l2":
        fmt = p.get("format", "GRAY16_LE" if spec.role == "tir" and spec.out_format == "GRAY16_LE" else "").upper()
        src = f"v4l2src device={spec.location}"
        if fmt == "MJPEG":
            dec = f"image/jpeg{_size_caps(spec)} ! jpegdec ! {_convert(spec, nvidia)}"
        elif fmt in ("GRAY16_LE", "GRAY8"):
            rows = int(spec.number("telemetry", 0))
            crop = f" ! videocrop bottom={rows}" if rows > 0 else ""
            dec = f"video/x-raw,format={fmt}{_size_caps(spec)}{crop}"
            if spec.out_format != fmt:
                dec += " ! videoconvert"
        elif fmt:
            dec = f"video/x-raw,format={fmt}{_size_caps(spec)} ! {_convert(spec, nvidia)}"
        else:
            dec = f"{_convert(spec, nvidia)}"
        return f"{src} ! {dec} ! {_sink(spec)}"
    if spec.scheme == "csi":
        w, h, fps = int(spec.number("width", 1280)), int(spec.number("height", 720)), spec.number("fps", 30)
        return (
            f"nvarguscamerasrc sensor-id={spec.location} ! "
            f"video/x-raw(memory:NVMM),width={w},height={h},framerate={_fraction(fps)} ! "
            f"nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! {_sink(spec)}"
        )
    if spec.scheme == "rtsp":
        latency = int(spec.number("latency", 100))
        return (
            f"rtspsrc location={spec.location} latency={latency} ! decodebin ! {_convert(spec, nvidia)} ! {_sink(spec)}"
        )
    return _file_launch(spec, nvidia)


def _file_launch(spec: SourceSpec, nvidia: bool) -> str:
    path = Path(spec.location)
    fps = spec.number("fps", 30)
    pattern, start = None, 0
    if path.is_dir():
        pattern, start = image_sequence(path)
    elif "%" in path.name:
        pattern = str(path)
    elif not path.exists():
        raise CKDError(f"{spec.name}: {path} does not exist")
    if pattern is None:
        return f'filesrc location="{path}" ! decodebin ! {_convert(spec, nvidia)} ! {_sink(spec)}'
    ext = Path(pattern).suffix.lower()
    caps, dec = ("image/png", "pngdec") if ext == ".png" else ("image/jpeg", "jpegdec")
    return (
        f'multifilesrc location="{pattern}" start-index={start} caps="{caps},framerate={_fraction(fps)}" ! '
        f"{dec} ! {_convert(spec, nvidia)} ! {_sink(spec)}"
    )
