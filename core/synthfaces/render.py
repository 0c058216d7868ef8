"""SynthFaces renderer: procedural faces drawn in torch, vectorised over a batch, with landmarks.

Shapes are signed-distance approximations in image coordinates (u right, v down, both in [-1, 1]), turned into
anti-aliased coverage over one pixel and composited back to front. Head features sit on an ellipsoid and move
with yaw and pitch by a simple 3-D rotation; roll tilts the whole head about the neck; the light shades skin by
the ellipsoid's normal. Each factor drives only its own part of the drawing.
"""
from __future__ import annotations

import math

import torch

from core.synthfaces.factors import FACTOR_NAMES, NUM_FACTORS, POSE_RANGE_DEG, FaceBatch, sample_factors

LANDMARK_NAMES = (
    "left_eye_outer", "left_eye_inner", "right_eye_inner", "right_eye_outer", "left_pupil", "right_pupil",
    "nose_tip", "mouth_left", "mouth_right", "upper_lip", "lower_lip",
) + tuple(f"jaw_{i}" for i in range(9))
NUM_LANDMARKS = len(LANDMARK_NAMES)
MIN_RES, MAX_RES = 32, 256

_SKIN_LIGHT = (0.97, 0.82, 0.70)
_SKIN_DARK = (0.42, 0.27, 0.19)
_IRIS = ((0.40, 0.22, 0.08), (0.25, 0.55, 0.20), (0.20, 0.45, 0.85), (0.55, 0.58, 0.62))
_HAIR = ((0.08, 0.06, 0.05), (0.28, 0.17, 0.09), (0.50, 0.32, 0.16), (0.62, 0.26, 0.12), (0.85, 0.70, 0.42),
         (0.70, 0.70, 0.70))
_SHIRT = (0.22, 0.30, 0.42)
_LIPS = (0.78, 0.32, 0.33)
_MOUTH = (0.28, 0.06, 0.08)
_TEETH = (0.95, 0.93, 0.88)
_SCLERA = (0.97, 0.96, 0.93)
_FRAME = (0.12, 0.10, 0.10)
_LENS = (0.07, 0.08, 0.10)
HEAD_Y = 0.0          # head centre
ZOOM = 1.3            # image half-width / world half-width shown: the face fills most of the frame
NECK_PIVOT_Y = 0.45   # roll pivot


def _palette(colours: tuple, t: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear colour ramp: t in [0, 1] ([B]) -> [B, 3]."""
    pal = torch.tensor(colours, dtype=torch.float32)
    pos = t.clamp(0, 1) * (len(colours) - 1)
    lo = pos.floor().long().clamp(max=len(colours) - 2)
    w = (pos - lo.float()).unsqueeze(1)
    return pal[lo] * (1 - w) + pal[lo + 1] * w


def _col(rgb: torch.Tensor) -> torch.Tensor:
    return rgb.view(-1, 3, 1, 1)


def _p(t: torch.Tensor) -> torch.Tensor:
    return t.view(-1, 1, 1)


class _Canvas:
    """Batch of images being composited, with the pixel size used for anti-aliasing."""

    def __init__(self, background: torch.Tensor, pixel: float) -> None:
        self.img = background
        self.aa = 1.0 / pixel

    def coverage(self, sdf: torch.Tensor) -> torch.Tensor:
        return (0.5 - sdf * self.aa).clamp(0, 1)

    def paint(self, alpha: torch.Tensor, colour: torch.Tensor) -> None:
        self.img = self.img + (colour - self.img) * alpha.unsqueeze(1)


class _Patch(_Canvas):
    """A square window of every image, placed per image around a small feature; painted, then written back.

    Small parts (eyes, nose, mouth, ears) are drawn only inside such windows, which is exact as long as the
    window is at least the part's diameter, and far cheaper than drawing over whole images.
    """

    def __init__(self, parent: _Canvas, ox: torch.Tensor, oy: torch.Tensor, size: int, coords: torch.Tensor) -> None:
        self.parent, self.aa = parent, parent.aa
        b = ox.shape[0]
        offs = torch.arange(size)
        self.rows = (oy.view(-1, 1) + offs).view(b, size, 1)
        self.cols = (ox.view(-1, 1) + offs).view(b, 1, size)
        self.bidx = torch.arange(b).view(b, 1, 1)
        self.img = parent.img[self.bidx, :, self.rows, self.cols].permute(0, 3, 1, 2)
        self.u = coords[self.cols].expand(b, size, size)
        self.v = coords[self.rows].expand(b, size, size)

    def commit(self) -> None:
        self.parent.img[self.bidx, :, self.rows, self.cols] = self.img.permute(0, 2, 3, 1)


def _ellipse(x: torch.Tensor, y: torch.Tensor, cx, cy, rx, ry) -> torch.Tensor:
    """Approximate signed distance to an axis-aligned ellipse (negative inside)."""
    dx = (x - cx) / rx
    dy = (y - cy) / ry
    return (torch.sqrt(dx * dx + dy * dy) - 1) * torch.minimum(torch.as_tensor(rx), torch.as_tensor(ry))


def _pose(f: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    to_rad = math.pi / 180
    yaw = (f["yaw"] * 2 - 1) * POSE_RANGE_DEG["yaw"] * to_rad
    pitch = (f["pitch"] * 2 - 1) * POSE_RANGE_DEG["pitch"] * to_rad
    roll = (f["roll"] * 2 - 1) * POSE_RANGE_DEG["roll"] * to_rad
    return yaw, pitch, roll


def _project(x: torch.Tensor, y: torch.Tensor, yaw: torch.Tensor, pitch: torch.Tensor, radius: float = 0.62,
             extra_depth: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project a point on the head ellipsoid (frontal x, y) under yaw and pitch; also the x foreshortening."""
    z = torch.sqrt((radius ** 2 - x * x - (y - HEAD_Y) ** 2).clamp(min=0.01)) + extra_depth
    xr = x * torch.cos(yaw) + z * torch.sin(yaw)
    zr = -x * torch.sin(yaw) + z * torch.cos(yaw)
    yr = HEAD_Y + (y - HEAD_Y) * torch.cos(pitch) - zr * torch.sin(pitch)
    squash = torch.cos(yaw + torch.asin((x / radius).clamp(-0.99, 0.99))).clamp(0.25, 1.0)
    return xr, yr, squash


def _geometry(f: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-image positions and sizes of every part, in unrolled head coordinates ([B] tensors)."""
    yaw, pitch, roll = _pose(f)
    g: dict[str, torch.Tensor] = {"yaw": yaw, "pitch": pitch, "roll": roll}
    g["face_a"] = 0.40 + 0.10 * f["face_width"]
    g["face_b"] = torch.full_like(g["face_a"], 0.56)
    g["jaw"] = 0.15 + 0.35 * f["jaw"]
    eye_dx = 0.14 + 0.08 * f["eye_spacing"]
    eye_y = torch.full_like(eye_dx, HEAD_Y - 0.02)
    g["eye_w"] = 0.075 + 0.03 * f["eye_size"]
    g["eye_h"] = g["eye_w"] * 0.55 * (0.12 + 0.88 * f["eye_open"])
    for side, sign in (("l", -1.0), ("r", 1.0)):
        ex, ey, sq = _project(sign * eye_dx, eye_y, yaw, pitch)
        g[f"eye_{side}_x"], g[f"eye_{side}_y"], g[f"eye_{side}_sq"] = ex, ey, sq
        bx, by, bsq = _project(sign * (eye_dx + 0.01), eye_y - 0.105, yaw, pitch)
        g[f"brow_{side}_x"], g[f"brow_{side}_y"], g[f"brow_{side}_sq"] = bx, by, bsq
    tip_y = HEAD_Y + 0.08 + 0.14 * f["nose_length"]
    g["nose_x"], g["nose_y"], _ = _project(torch.zeros_like(tip_y), tip_y, yaw, pitch, extra_depth=0.10)
    g["bridge_x"], g["bridge_y"], _ = _project(torch.zeros_like(tip_y), eye_y + 0.02, yaw, pitch, extra_depth=0.03)
    g["nose_w"] = 0.030 + 0.025 * f["nose_width"]
    mouth_y = HEAD_Y + 0.35 + torch.zeros_like(tip_y)
    g["mouth_x"], g["mouth_y"], g["mouth_sq"] = _project(torch.zeros_like(mouth_y), mouth_y, yaw, pitch)
    g["mouth_w"] = (0.09 + 0.09 * f["mouth_width"]) * g["mouth_sq"]
    g["smile_lift"] = (f["smile"] - 0.35) * 0.16
    g["mouth_h"] = 0.085 * f["mouth_open"]
    g["ear_r"] = 0.05 + 0.05 * f["ear_size"]
    return g


def _roll_points(x: torch.Tensor, y: torch.Tensor, roll: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c, s = torch.cos(roll), torch.sin(roll)
    dy = y - NECK_PIVOT_Y
    return x * c - dy * s, NECK_PIVOT_Y + x * s + dy * c


def landmarks_from_geometry(g: dict[str, torch.Tensor], resolution: int) -> torch.Tensor:
    """[B, NUM_LANDMARKS, 2] landmark pixel coordinates (x, y; pixel i's centre is at i)."""
    pts = []
    for side in ("l", "r"):
        ex, ey, sq = g[f"eye_{side}_x"], g[f"eye_{side}_y"], g[f"eye_{side}_sq"]
        half = g["eye_w"] * sq
        pts += [(ex - half, ey), (ex + half, ey)]
    pupils = [(g["eye_l_x"], g["eye_l_y"]), (g["eye_r_x"], g["eye_r_y"])]
    mx, my, mw = g["mouth_x"], g["mouth_y"], g["mouth_w"]
    corner_y = my - g["smile_lift"]
    mouth = [(mx - mw, corner_y), (mx + mw, corner_y), (mx, my - g["mouth_h"] / 2 - 0.022),
             (mx, my + g["mouth_h"] / 2 + 0.03)]
    jaw = []
    for t in torch.linspace(0, math.pi, 9).tolist():
        yy = HEAD_Y + g["face_b"] * math.sin(t)
        width = g["face_a"] * (1 - g["jaw"] * (math.sin(t) ** 2))
        jaw.append((width * math.cos(t), yy))
    pts = pts + pupils + [(g["nose_x"], g["nose_y"])] + mouth + jaw
    xs = torch.stack([p[0] for p in pts], dim=1)
    ys = torch.stack([p[1] for p in pts], dim=1)
    roll = g["roll"].unsqueeze(1)
    xs, ys = _roll_points(xs, ys, roll)
    scale = resolution * ZOOM / 2
    return torch.stack([(xs + 1 / ZOOM) * scale - 0.5, (ys + 1 / ZOOM) * scale - 0.5], dim=2)


def render(factors: torch.Tensor, resolution: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Render [B, NUM_FACTORS] normalised factors to ([B, 3, R, R] images in [0, 1], [B, L, 2] landmarks)."""
    if not (MIN_RES <= resolution <= MAX_RES):
        raise ValueError(f"resolution must be between {MIN_RES} and {MAX_RES}, got {resolution}")
    if factors.ndim != 2 or factors.shape[1] != NUM_FACTORS:
        raise ValueError(f"factors must have shape [batch, {NUM_FACTORS}], got {list(factors.shape)}")
    if not torch.isfinite(factors).all():
        raise ValueError("factors contain NaN or infinite values")
    factors = factors.float().clamp(0, 1)
    b = factors.shape[0]
    f = {name: factors[:, i] for i, name in enumerate(FACTOR_NAMES)}
    g = _geometry(f)
    pixel = 2.0 / resolution / ZOOM  # world units per pixel
    coords = (torch.arange(resolution, dtype=torch.float32) + 0.5) * pixel - 1 / ZOOM
    v0 = coords.view(1, -1, 1).expand(b, resolution, resolution)
    u0 = coords.view(1, 1, -1).expand(b, resolution, resolution)

    # Background: a soft vertical gradient of the background hue.
    hue = f["background"].view(-1, 1) + torch.tensor([0.0, 1 / 3, 2 / 3])
    bg = 0.62 + 0.22 * torch.cos(2 * math.pi * hue)
    canvas = _Canvas(_col(bg) * (1.08 - 0.16 * (v0.unsqueeze(1) * ZOOM + 1) / 2), pixel)

    skin = _palette((_SKIN_LIGHT, _SKIN_DARK), f["skin_tone"])
    hair = _palette(_HAIR, f["hair_colour"])
    style = _p(f["hair_style"])
    a, bb, jaw = _p(g["face_a"]), _p(g["face_b"]), _p(g["jaw"])

    # Body (not rolled): shoulders and neck.
    canvas.paint(canvas.coverage(_ellipse(u0, v0, 0.0, 1.28, 0.95, 0.50)), _col(torch.tensor(_SHIRT).expand(b, 3)))
    neck = torch.maximum((u0.abs() - a * 0.42), (HEAD_Y + 0.25 - v0))
    canvas.paint(canvas.coverage(neck), _col(skin * 0.78))

    # Head coordinates: the sampling grid rotated by -roll about the neck pivot.
    c, s = torch.cos(_p(g["roll"])), torch.sin(_p(g["roll"]))

    def head_xy(u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dv = v - NECK_PIVOT_Y
        return u * c + dv * s, NECK_PIVOT_Y - u * s + dv * c

    hx, hy = head_xy(u0, v0)
    yaw_s = _p(torch.sin(g["yaw"]))

    # Hair behind the head (longer styles reach further down).
    back_len = (style - 0.3).clamp(min=0) * 1.1
    back = torch.maximum(torch.maximum(hx.abs() - a * 1.16, hy - (HEAD_Y + 0.05 + back_len)), HEAD_Y - 0.1 - hy)
    back = torch.minimum(back, _ellipse(hx, hy, 0.0, HEAD_Y - 0.06, a * 1.16, bb * 1.02))
    canvas.paint(canvas.coverage(back) * (style > 0.3).float(), _col(hair * 0.8))

    theta = _p(f["light_direction"]) * 2 * math.pi
    strength = _p(0.15 + 0.45 * f["light_strength"])

    def skin_at(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Skin colour lit by the light direction through the head ellipsoid's normal."""
        nx = (x / a).clamp(-1, 1)
        ny = ((y - HEAD_Y) / bb).clamp(-1, 1)
        nz = (1 - nx * nx - ny * ny).clamp(min=0).sqrt()
        lambert = 0.75 * torch.cos(theta) * nx + 0.75 * torch.sin(theta) * ny + 0.66 * nz
        return _col(skin) * (1 + strength * (lambert - 0.55)).unsqueeze(1)

    def patch(cx: torch.Tensor, cy: torch.Tensor, radius: float) -> _Patch:
        ix, iy = _roll_points(cx, cy, g["roll"])
        size = min(resolution, int(math.ceil(2 * radius / pixel)) + 3)
        ox = (((ix + 1 / ZOOM) / pixel - 0.5) - size / 2).round().long().clamp(0, resolution - size)
        oy = (((iy + 1 / ZOOM) / pixel - 0.5) - size / 2).round().long().clamp(0, resolution - size)
        return _Patch(canvas, ox, oy, size, coords)

    # Ears, hidden on the side the head turns towards.
    for sign in (-1.0, 1.0):
        ex = sign * (g["face_a"] * 0.97) - torch.sin(g["yaw"]) * 0.08
        pt = patch(ex, torch.full_like(ex, HEAD_Y + 0.05), 0.25)
        x, y = head_xy(pt.u, pt.v)
        vis = (1 - sign * yaw_s * 1.8).clamp(0.1, 1.3)
        ear = _ellipse(x, y, _p(ex), HEAD_Y + 0.05, _p(g["ear_r"]) * 0.62 * vis, _p(g["ear_r"]))
        pt.paint(pt.coverage(ear), _col(skin * 0.88))
        pt.commit()

    # Face with jaw taper, lit by the light.
    yy = ((hy - HEAD_Y) / bb).clamp(0, 1)
    a_eff = a * (1 - jaw * yy * yy)
    face = (torch.sqrt((hx / a_eff) ** 2 + ((hy - HEAD_Y) / bb) ** 2) - 1) * a_eff
    canvas.paint(canvas.coverage(face), skin_at(hx, hy))

    # Nose: a soft shaded body from bridge to tip, a lit tip and two nostrils.
    nose_x, nose_y, nw = _p(g["nose_x"]), _p(g["nose_y"]), _p(g["nose_w"])
    bridge_x, bridge_y = _p(g["bridge_x"]), _p(g["bridge_y"])
    mid_x, mid_y = (nose_x + bridge_x) / 2, (nose_y + bridge_y) / 2
    pt = patch(mid_x.view(-1), mid_y.view(-1), 0.18)
    x, y = head_xy(pt.u, pt.v)
    skin_field = skin_at(x, y)
    body = _ellipse(x, y, mid_x + yaw_s * 0.01, mid_y, nw * 0.75, (nose_y - bridge_y) / 2 + 0.01)
    pt.paint(pt.coverage(body) * 0.35, skin_field * 0.85)
    pt.paint(pt.coverage(_ellipse(x, y, nose_x, nose_y, nw, nw * 0.75)) * 0.8, skin_field * 1.04)
    for sign in (-1.0, 1.0):
        nostril = _ellipse(x, y, nose_x + sign * nw * 0.75, nose_y + nw * 0.45, nw * 0.42, nw * 0.25)
        pt.paint(pt.coverage(nostril) * 0.85, skin_field * 0.45)
    pt.commit()

    # Mouth: lips around a curve lifted at the corners by the smile; open mouths show teeth.
    mx, my, mw = _p(g["mouth_x"]), _p(g["mouth_y"]), _p(g["mouth_w"])
    lift, mh = _p(g["smile_lift"]), _p(g["mouth_h"])
    pt = patch(g["mouth_x"], g["mouth_y"], 0.28)
    x, y = head_xy(pt.u, pt.v)
    xn = ((x - mx) / mw).clamp(-1.5, 1.5)
    curve = my - lift * xn * xn
    taper = (1 - xn * xn).clamp(min=0)
    inner_half = mh / 2 * taper.sqrt()
    top = curve - inner_half - 0.022 * taper - 0.004
    bot = curve + inner_half + 0.030 * taper + 0.004
    lips = torch.maximum(torch.maximum(top - y, y - bot), (x - mx).abs() - mw)
    lip_colour = skin_at(x, y) * 0.45 + _col(torch.tensor(_LIPS).expand(b, 3)) * 0.5
    pt.paint(pt.coverage(lips), lip_colour)
    opening = torch.maximum((y - curve).abs() - inner_half, (x - mx).abs() - mw * 0.92)
    pt.paint(pt.coverage(opening) * (mh > 0.004).float(), _col(torch.tensor(_MOUTH).expand(b, 3)))
    teeth = torch.maximum(torch.maximum(opening, y - (curve - inner_half + mh * 0.38)), (x - mx).abs() - mw * 0.62)
    pt.paint(pt.coverage(teeth), _col(torch.tensor(_TEETH).expand(b, 3)))
    line = torch.maximum((y - curve).abs() - 0.004 - inner_half, (x - mx).abs() - mw * 0.97)
    pt.paint(pt.coverage(line) * 0.6, lip_colour * 0.55)
    pt.commit()

    # Eyes (sclera, iris, pupil, glint, lid line) and brows, one window per side.
    iris_rgb = _palette(_IRIS, f["iris_colour"])
    eye_w, eye_h = _p(g["eye_w"]), _p(g["eye_h"])
    thick = _p(0.010 + 0.018 * f["brow_thickness"])
    for side in ("l", "r"):
        ex, ey, sq = _p(g[f"eye_{side}_x"]), _p(g[f"eye_{side}_y"]), _p(g[f"eye_{side}_sq"])
        pt = patch(g[f"eye_{side}_x"], g[f"eye_{side}_y"], 0.23)
        x, y = head_xy(pt.u, pt.v)
        sclera = _ellipse(x, y, ex, ey, eye_w * sq, eye_h + 1e-4)
        lid = _ellipse(x, y, ex, ey, eye_w * sq + 0.012, eye_h + 0.012)
        pt.paint(pt.coverage(lid), skin_at(x, y) * 0.55)
        inside = pt.coverage(sclera)
        pt.paint(inside, _col(torch.tensor(_SCLERA).expand(b, 3)))
        iris_r = eye_w * 0.58
        iris = _ellipse(x, y, ex, ey, iris_r * sq, iris_r)
        pt.paint(pt.coverage(iris) * inside, _col(iris_rgb))
        pt.paint(pt.coverage(iris + iris_r * 0.55) * inside, _col(iris_rgb * 0.15))
        glint = _ellipse(x, y, ex + iris_r * 0.35, ey - iris_r * 0.35, iris_r * 0.22, iris_r * 0.22)
        pt.paint(pt.coverage(glint) * inside * 0.8, _col(torch.ones(b, 3)))
        bx, by, bsq = _p(g[f"brow_{side}_x"]), _p(g[f"brow_{side}_y"]), _p(g[f"brow_{side}_sq"])
        bend = by + 0.05 * ((x - bx) / (eye_w * 1.25 * bsq)) ** 2 - 0.012
        brow = torch.maximum((y - bend).abs() - thick, (x - bx).abs() - eye_w * 1.25 * bsq)
        pt.paint(pt.coverage(brow), _col(hair * 0.75))
        pt.commit()

    # Hair over the forehead: a cap above a hairline that drops with longer styles.
    cap = _ellipse(hx, hy, 0.0, HEAD_Y - 0.07, a * 1.10, bb * 1.0)
    hairline = HEAD_Y - bb * (0.62 - 0.22 * style) + 0.12 * (hx / a) ** 2 + 0.03 * torch.sin(7 * hx + 9 * style)
    cap = torch.maximum(cap, hy - hairline)
    sheen = 1 + 0.25 * (-(hx - 0.12) ** 2 / 0.05 - (hy - (HEAD_Y - 0.45)) ** 2 / 0.02).exp()
    canvas.paint(canvas.coverage(cap), _col(hair) * sheen.unsqueeze(1))

    # Glasses: thin frames, or dark lenses for sunglasses; a bridge between them.
    sunglasses = (_p(f["sunglasses"]) > 0.5).float()
    any_glasses = ((_p(f["eyeglasses"]) > 0.5) | (_p(f["sunglasses"]) > 0.5)).float()
    frame_rgb = _col(torch.tensor(_FRAME).expand(b, 3))
    lens_r = eye_w * 1.35 + 0.02
    for side in ("l", "r"):
        ex, ey, sq = _p(g[f"eye_{side}_x"]), _p(g[f"eye_{side}_y"]), _p(g[f"eye_{side}_sq"])
        pt = patch(g[f"eye_{side}_x"], g[f"eye_{side}_y"] + 0.01, 0.19)
        x, y = head_xy(pt.u, pt.v)
        lens = _ellipse(x, y, ex, ey + 0.01, lens_r * sq, lens_r * 0.8)
        pt.paint(pt.coverage(lens) * sunglasses * 0.93, _col(torch.tensor(_LENS).expand(b, 3)))
        pt.paint(pt.coverage(lens.abs() - 0.011) * any_glasses, frame_rgb)
        pt.commit()
    lx, ly, lsq = _p(g["eye_l_x"]), _p(g["eye_l_y"]), _p(g["eye_l_sq"])
    rx, ry, rsq = _p(g["eye_r_x"]), _p(g["eye_r_y"]), _p(g["eye_r_sq"])
    pt = patch((g["eye_l_x"] + g["eye_r_x"]) / 2, (g["eye_l_y"] + g["eye_r_y"]) / 2, 0.16)
    x, y = head_xy(pt.u, pt.v)
    bridge = torch.maximum((y - (ly + ry) / 2 + 0.005).abs() - 0.009,
                           (x - (lx + rx) / 2).abs() - ((rx - lx) / 2 - lens_r * (lsq + rsq) / 2 + 0.01))
    pt.paint(pt.coverage(bridge) * any_glasses, frame_rgb)
    pt.commit()

    return canvas.img.clamp(0, 1), landmarks_from_geometry(g, resolution)


FAST_BATCH = 256
_compiled_render = None


def fast_render(factors: torch.Tensor, resolution: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Same output as `render`, through torch.compile: about 10x faster on CPU after a one-off compile of a
    minute or two per resolution. Batches run in fixed chunks of FAST_BATCH so that nothing recompiles."""
    global _compiled_render
    if _compiled_render is None:
        _compiled_render = torch.compile(render, dynamic=False)
    if factors.ndim != 2 or factors.shape[1] != NUM_FACTORS:
        raise ValueError(f"factors must have shape [batch, {NUM_FACTORS}], got {list(factors.shape)}")
    images, landmarks = [], []
    for start in range(0, factors.shape[0], FAST_BATCH):
        part = factors[start:start + FAST_BATCH]
        n = part.shape[0]
        if n < FAST_BATCH:
            part = torch.cat([part, part[-1:].expand(FAST_BATCH - n, -1)])
        img, lm = _compiled_render(part, resolution)
        images.append(img[:n])
        landmarks.append(lm[:n])
    return torch.cat(images), torch.cat(landmarks)


def render_faces(identity_ids: torch.Tensor, seed: int, resolution: int = 64, world_seed: int = 0,
                 fast: bool = False) -> FaceBatch:
    """Render one image per identity id, attributes drawn from `seed`; deterministic in (ids, seed, world_seed).
    `fast` uses the compiled renderer (worth it for tens of thousands of images)."""
    ids = torch.as_tensor(identity_ids, dtype=torch.int64)
    factors = sample_factors(ids, seed, world_seed)
    images, landmarks = (fast_render if fast else render)(factors, resolution)
    return FaceBatch(images=images, identity=ids, factors=factors, landmarks=landmarks)
