"""`ckd calibrate-rig`: estimate the thermal -> RGB homography that `ckd run --rig` applies."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate-rig",
        aliases=["calibrate_rig"],
        help="estimate the thermal->RGB homography of a camera rig (point pairs or a heated checkerboard)",
        description="Estimate the 3x3 homography mapping thermal pixels onto RGB pixels and save it as JSON for "
        "`ckd run --rig`. Either --points FILE (one pair per line: x_tir y_tir x_rgb y_rgb, 0-based pixels, "
        "comma/space/tab separated; at least 4, RANSAC above 4) or --rgb-image/--tir-image of a heated "
        "checkerboard seen by both cameras with --board COLSxROWS inner corners.",
    )
    p.add_argument("--points", default=None, help="point-pair file: x_tir y_tir x_rgb y_rgb per line")
    p.add_argument("--rgb-image", default=None, help="RGB image of the checkerboard")
    p.add_argument("--tir-image", default=None, help="thermal image of the same checkerboard (8 or 16 bit)")
    p.add_argument("--board", default="9x6", help="inner corners COLSxROWS (default 9x6)")
    p.add_argument("--rgb-size", default=None, help="RGB frame WxH (default: from --rgb-image)")
    p.add_argument("--tir-size", default=None, help="thermal frame WxH (default: from --tir-image)")
    p.add_argument("--out", default="rig.json", help="output JSON (default rig.json)")
    p.set_defaults(func=run)


def _size(text: str | None, what: str) -> tuple[int, int] | None:
    from ckd.errors import CKDError

    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise CKDError(f"{what} must be WIDTHxHEIGHT, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise CKDError(f"{what} must be positive, got {text!r}")
    return w, h


def _read_image(path: str, what: str):
    import cv2

    from ckd.errors import CKDError

    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise CKDError(f"{what} {path}: cannot read the image")
    return image


def run(args: argparse.Namespace) -> int:
    from ckd.data.boxes import read_boxes
    from ckd.errors import CKDError
    from pipelines.registration import RigCalibration, checkerboard_points, estimate

    rgb_size, tir_size = _size(args.rgb_size, "--rgb-size"), _size(args.tir_size, "--tir-size")
    if args.points:
        pairs = read_boxes(args.points, columns=4)
        tir_pts, rgb_pts = pairs[:, :2], pairs[:, 2:]
    elif args.rgb_image and args.tir_image:
        pattern = _size(args.board, "--board")
        rgb, tir = _read_image(args.rgb_image, "--rgb-image"), _read_image(args.tir_image, "--tir-image")
        rgb_pts, tir_pts = checkerboard_points(rgb, pattern), checkerboard_points(tir, pattern)
        for pts, what, path in ((rgb_pts, "--rgb-image", args.rgb_image), (tir_pts, "--tir-image", args.tir_image)):
            if pts is None:
                raise CKDError(f"{what} {path}: no {args.board} checkerboard found")
        rgb_size = rgb_size or (rgb.shape[1], rgb.shape[0])
        tir_size = tir_size or (tir.shape[1], tir.shape[0])
    else:
        raise CKDError("give --points FILE, or --rgb-image and --tir-image of a checkerboard")
    if rgb_size is None or tir_size is None:
        raise CKDError("--points needs --rgb-size and --tir-size (WxH of each camera's frames)")
    h, rms = estimate(tir_pts, rgb_pts)
    path = RigCalibration(h, rgb_size, tir_size, rms, len(tir_pts)).save(args.out)
    print(f"{path}: homography from {len(tir_pts)} point pairs, RMS reprojection error {rms:.2f} px")
    return 0
