"""
Render the simulated robot's forward camera: a pitched pinhole over a world of prisms.

Everything in a :class:`~ssl_obstacle.sim.world.World` is a vertical prism on a flat floor,
and the camera never rolls, so rendering reduces to 2-D ray casting (the classic "column
renderer"), done exactly for a pitched camera:

* In the robot frame every pixel's ray is fixed. What matters of it is its **azimuth**
  (relative to the heading) and its **slope** ``dz`` per metre of horizontal travel. With
  pitch, vertical lines are not image columns, so pixels are grouped into azimuth **bins**
  of half a pixel instead of columns; pixels are sorted once by (bin, slope).
* Per frame, one horizontal ray per bin is cast against every segment and circle of
  :meth:`World.primitives` (vectorised over bins × primitives). A ray of slope ``s`` at the
  hit at horizontal distance ``t`` is at height ``mount_z + s·t``: the hit is seen by the
  slopes ``s ≤ U = (height - mount_z) / t``, unless a nearer hit with a larger ``U``
  already covers them. Keeping only hits whose ``U`` exceeds every nearer one's (the
  "skyline") leaves a few layers per bin whose ``U`` increase with distance, and a
  pixel's layer is simply the number of those ``U`` below its slope: one ``searchsorted``
  over all bins at once, a ``bincount`` and a ``cumsum`` give every pixel its layer.
  A layer's surface is seen where the ray is still above the floor there
  (``mount_z + s·t ≥ 0``), the floor otherwise; beyond the last layer is the sky.
  A short obstacle therefore never hides a tall one above its top edge, and a ray that
  passes over a front face and meets the back face below the obstacle's height has crossed
  its top: back faces are drawn as tops.
* Colour is a per-layer palette (material colour × Lambertian shade × lighting tint × a
  mild distance darkening) times a per-pixel texture factor read from a small atlas with
  world-anchored coordinates: floor ``(x, y)``, surface (arc length along the surface,
  height). Only gathers and a few element-wise operations are done per pixel.

Nothing here depends on ROS, so the simulator, tests and benchmarks share it as is.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
import zlib

import numpy as np

try:  # interleaving colour planes is 10x faster in OpenCV than in numpy
    import cv2
except ImportError:  # pragma: no cover
    cv2 = None

from .world import TEXTURES, World

#: Side of every texture in the atlas (a power of two, so wrapping is a bitwise and).
_TEX = 256
_TEX_MASK = _TEX - 1
#: Added to texel coordinates before truncation, so that negative coordinates wrap like
#: positive ones: a multiple of the texture side, beyond any coordinate within 100 m, yet
#: small enough to keep float32 texel positions precise.
_TEX_WRAP = float(_TEX * 64)
#: Texel sizes in metres: the atlas patterns are 16 texels per stripe or checker cell.
_SURFACE_TEXEL = 0.0025
_FLOOR_TEXEL = 0.00625
#: A floor checker square is 16 texels (0.1 m); the pattern repeats every two squares.
FLOOR_CHECKER_PERIOD = 2 * 16 * _FLOOR_TEXEL
_SKY_SLOT = len(TEXTURES)
#: Elevation of the directional light; :class:`Lighting` gives only its azimuth.
_LIGHT_ELEVATION = math.radians(50.0)
#: Distance darkening, per metre: a depth cue, as dim corners in a lab are.
_FOG = 0.1
#: At most this many visible surfaces per azimuth bin (hits of rising skyline); more
#: would need five or more obstacles of increasing height in one direction.
_MAX_LAYERS = 6
#: Slopes are kept to ±_SLOPE_CLIP so that ``bin * _KEY_STRIDE + slope`` sorts by bin first.
_SLOPE_CLIP = 30.0
_KEY_STRIDE = 4 * _SLOPE_CLIP
_SKY_COLOR = (0.78, 0.82, 0.9)
#: Length of the bank of Gaussian pixel noise beyond one frame's worth.
_NOISE_SLACK = 1 << 16


@dataclass(frozen=True)
class CameraModel:
    """
    A level-in-roll pinhole camera at the front of the robot, pitched down.

    The default pitch of 15° puts the horizon near the top of the image (row 16 of 240), so
    walls and obstacles far away stay in view, and the bottom row meets the floor 9.5 cm
    ahead of the lens, 16.5 cm ahead of ``base_link``. Ahead of ``base_link``, the floor
    30 cm away is at mid-height (row 117), 60 cm at row 61, 1 m at row 42: the distances
    that the label grid covers (0-30 cm of travel plus the sensors' 14 cm reach) fill most of
    the image. Seeing the floor 5 cm ahead of the lens would need 50° below the horizon,
    which a 45° horizontal field of view (34.4° vertical at 4:3) cannot combine with a
    visible horizon at a 6 cm mounting height; an obstacle nearer than that fills the lower
    image anyway.
    """

    width: int = 320
    height: int = 240
    #: Horizontal field of view, as the Mighty Thymio's camera.
    hfov: float = math.radians(45.0)
    #: Pitched down by this much (positive = down).
    pitch: float = math.radians(15.0)
    #: Metres ahead of ``base_link`` (the front of the robot).
    mount_x: float = 0.07
    #: Metres above the floor.
    mount_z: float = 0.06

    def intrinsics(self) -> tuple[float, float, float, float]:
        """
        Return ``fx, fy, cx, cy`` (square pixels) for ``sensor_msgs/CameraInfo``.

        Pixel centres are at integer coordinates (the OpenCV and ROS convention), so the
        principal point ``(w - 1) / 2`` lies exactly between the two middle columns and the
        image is symmetric about the optical axis.
        """
        fx = (self.width / 2) / math.tan(self.hfov / 2)
        return fx, fx, (self.width - 1) / 2, (self.height - 1) / 2

    def pixel_rays(self) -> np.ndarray:
        """
        Return every pixel's ray direction in the robot frame, ``(height, width, 3)``.

        Axes are ``base_link``'s (x ahead, y left, z up); the rays are not normalised (the
        renderer needs only their azimuth and slope).
        """
        fx, fy, cx, cy = self.intrinsics()
        rows, cols = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        right = (cols - cx) / fx
        down = (rows - cy) / fy
        cos_p, sin_p = math.cos(self.pitch), math.sin(self.pitch)
        return np.stack((cos_p - down * sin_p, -right, -sin_p - down * cos_p), axis=-1)

    def project(self, pose: tuple[float, float, float] | np.ndarray,
                points: np.ndarray) -> np.ndarray:
        """
        Return the pixel coordinates ``(u, v)`` and depth of world points, ``(..., 3)``.

        ``pose`` is the robot's ``(x, y, yaw)``; ``points`` is ``(..., 3)`` world ``x, y, z``.
        Depth is along the optical axis (negative behind the camera). Used to check the
        renderer against :meth:`intrinsics` and to overlay world geometry on images.
        """
        x, y, yaw = (float(v) for v in pose)
        points = np.asarray(points, dtype=np.float64)
        dx, dy = points[..., 0] - x, points[..., 1] - y
        cos_y, sin_y = math.cos(yaw), math.sin(yaw)
        ahead = cos_y * dx + sin_y * dy - self.mount_x
        left = -sin_y * dx + cos_y * dy
        up = points[..., 2] - self.mount_z
        cos_p, sin_p = math.cos(self.pitch), math.sin(self.pitch)
        depth = cos_p * ahead - sin_p * up
        optical_down = -(sin_p * ahead + cos_p * up)
        fx, fy, cx, cy = self.intrinsics()
        with np.errstate(divide='ignore', invalid='ignore'):
            u = fx * -left / depth + cx
            v = fy * optical_down / depth + cy
        return np.stack((u, v, depth), axis=-1)


def _periodic_upsample(coarse: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly upsample a square grid to ``size`` × ``size``, wrapping at the edges."""
    n = coarse.shape[0]
    position = np.arange(size) * (n / size)
    i0 = np.floor(position).astype(np.int64) % n
    i1 = (i0 + 1) % n
    frac = position - np.floor(position)
    rows = coarse[i0] * (1 - frac)[:, None] + coarse[i1] * frac[:, None]
    return rows[:, i0] * (1 - frac)[None, :] + rows[:, i1] * frac[None, :]


def _texture_atlas(seed: int, mount_z: float) -> np.ndarray:
    """
    Return the texture factors, ``(len(TEXTURES) + 1, _TEX, _TEX)`` float32.

    Rows are the vertical (or floor y) coordinate, columns the horizontal one. Patterns are
    16 texels per stripe or checker cell, which divides the side, so they tile seamlessly.
    The noise pattern is seeded by the world: fixed for a world, different between worlds.
    The last slot is the sky's vertical gradient, indexed by ``mount_z + slope`` (the sky
    layer's distance is 1), brightest at the horizon.
    """
    atlas = np.ones((len(TEXTURES) + 1, _TEX, _TEX), dtype=np.float64)
    cells = np.arange(_TEX) // 16
    atlas[TEXTURES.index('stripes')] = np.where(cells % 2 == 0, 1.0, 0.6)[None, :]
    atlas[TEXTURES.index('checker')] = np.where((cells[:, None] + cells[None, :]) % 2 == 0,
                                                1.0, 0.65)
    rng = np.random.default_rng(seed)
    # Blotches of three sizes, smooth at the texel scale so that nearest-texel sampling
    # does not show as blocks close to the camera.
    noise = (_periodic_upsample(rng.uniform(-1, 1, (8, 8)), _TEX)
             + 0.6 * _periodic_upsample(rng.uniform(-1, 1, (32, 32)), _TEX)
             + 0.4 * _periodic_upsample(rng.uniform(-1, 1, (64, 64)), _TEX))
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    atlas[TEXTURES.index('noise')] = 0.6 + 0.7 * noise
    slope = (np.arange(_TEX) + 0.5) * _SURFACE_TEXEL - mount_z
    atlas[_SKY_SLOT] = (1.0 - 0.45 * np.clip(slope / 0.5, 0.0, 1.0))[:, None]
    return atlas.astype(np.float32)


class Renderer:
    """
    Render a :class:`World` through a :class:`CameraModel` from any robot pose.

    Everything that does not depend on the pose (rays, bins, pixel order, floor points in
    the robot frame, textures, materials) is computed here, once; :meth:`render` then costs
    a small 2-D ray cast and about twenty vectorised operations per pixel.
    """

    def __init__(self, world: World, camera: CameraModel = CameraModel(),  # noqa: B008
                 noise: float = 2.0) -> None:
        """Prepare to render ``world``; ``noise`` is the std of Gaussian pixel noise."""
        self.world = world
        self.camera = camera
        self.noise = float(noise)
        self._prepare_pixels()
        self._prepare_world()
        self._noise_bank: np.ndarray | None = None
        self._noise_std = self.noise

    # ----------------------------------------------------------------- preparation
    def _prepare_pixels(self) -> None:
        """Bin pixels by azimuth, sort them by (bin, slope) and place their floor points."""
        camera = self.camera
        rays = camera.pixel_rays().reshape(-1, 3)
        azimuth = np.arctan2(rays[:, 1], rays[:, 0])
        slope = np.clip(rays[:, 2] / np.hypot(rays[:, 0], rays[:, 1]),
                        -_SLOPE_CLIP, _SLOPE_CLIP)
        # Half-pixel bins, symmetric about the optical axis so that mirror images are.
        step = 0.5 * camera.hfov / camera.width
        half = int(np.ceil(np.abs(azimuth).max() / step))
        pixel_bin = np.rint(azimuth / step).astype(np.int64) + half
        self._bins = 2 * half + 1
        bin_azimuth = step * (np.arange(self._bins) - half)
        self._bin_cos, self._bin_sin = np.cos(bin_azimuth), np.sin(bin_azimuth)
        # The wedge the bins cover, with a bin's margin, for culling what is out of view.
        self._view_centre = 0.5 * (bin_azimuth[0] + bin_azimuth[-1])
        self._view_half = 0.5 * (bin_azimuth[-1] - bin_azimuth[0]) + step

        order = np.lexsort((slope, pixel_bin))
        self._unsort = np.argsort(order)
        self._keys = pixel_bin[order] * _KEY_STRIDE + slope[order]
        self._bin_start = np.searchsorted(self._keys,
                                          np.arange(self._bins) * _KEY_STRIDE - _SLOPE_CLIP)
        self._slope = slope[order].astype(np.float32)
        sorted_azimuth = azimuth[order]
        with np.errstate(divide='ignore'):
            t_floor = np.where(self._slope < 0, camera.mount_z / -slope[order], np.inf)
        t_floor = np.minimum(t_floor, 100.0)
        # Floor points relative to the camera, robot-aligned, in floor texels.
        self._floor_ahead = (t_floor * np.cos(sorted_azimuth) / _FLOOR_TEXEL).astype(np.float32)
        self._floor_left = (t_floor * np.sin(sorted_azimuth) / _FLOOR_TEXEL).astype(np.float32)
        self._floor_fog = np.exp(-_FOG * t_floor).astype(np.float32)

    def _prepare_world(self) -> None:
        """Flatten the world into per-primitive columns and per-material colours."""
        world, camera = self.world, self.camera
        prims = world.primitives()
        lighting = world.lighting
        tint = np.asarray(lighting.tint, dtype=np.float64)
        seed = world.texture_seed or zlib.crc32(world.name.encode())
        self._atlas = _texture_atlas(seed, camera.mount_z).ravel()

        # Materials: 0 is the arena wall, 1 + i obstacle i.
        obstacles = world.obstacles
        colors = [world.wall_color] + [o.color for o in obstacles]
        textures = [world.wall_texture] + [o.texture for o in obstacles]
        self._material_color = np.asarray(colors, dtype=np.float64) * tint * 255.0
        self._material_slot = np.array([TEXTURES.index(t) for t in textures], dtype=np.int64)
        self._material_shift = np.random.default_rng(seed).integers(0, _TEX, len(colors))

        segments = prims.segments
        start, end = segments[:, :2], segments[:, 2:]
        edge = end - start
        length = np.hypot(edge[:, 0], edge[:, 1])
        unit = edge / np.maximum(length, 1e-12)[:, None]
        normal = np.stack((unit[:, 1], -unit[:, 0]), axis=1)
        # Outward for obstacles (away from their centre), inward for the arena.
        centre = np.zeros_like(start)
        owner = prims.segment_owner
        for index, obstacle in enumerate(obstacles):
            centre[owner == index] = (obstacle.x, obstacle.y)
        outward = np.einsum('ij,ij->i', normal, 0.5 * (start + end) - centre) >= 0
        normal = np.where((outward == (owner >= 0))[:, None], normal, -normal)
        # Arc length along each owner's outline, so stripes run on round the corners.
        offset = np.zeros(len(segments))
        for value in np.unique(owner):
            members = np.flatnonzero(owner == value)
            offset[members] = np.concatenate(([0.0], np.cumsum(length[members])[:-1]))

        self._seg_start, self._seg_edge, self._seg_unit = start, edge, unit
        self._seg_normal, self._seg_offset = normal, offset
        circles = prims.circles
        self._circle_centre = circles[:, :2]
        self._circle_radius = circles[:, 2]
        n_seg, n_circ = len(segments), len(circles)
        self._n_seg, self._n_circ = n_seg, n_circ
        # Columns: segments, circle entries, circle exits, and one dummy for padding.
        self._col_height = np.concatenate((prims.segment_height, prims.circle_height,
                                           prims.circle_height, [0.0]))
        self._col_material = np.concatenate((owner, prims.circle_owner, prims.circle_owner,
                                             [-1])) + 1
        self._col_is_circle = np.concatenate((np.zeros(n_seg, bool), np.ones(2 * n_circ, bool),
                                              [False]))
        # Index of a column's segment or circle (clipped so gathers stay in range).
        self._col_prim = np.concatenate((np.arange(n_seg), np.arange(n_circ),
                                         np.arange(n_circ), [0]))
        self._col_exit = np.concatenate((np.zeros(n_seg + n_circ, bool), np.ones(n_circ, bool),
                                         [False]))

        # Shading: a vertical surface facing the light gets cos(elevation) of the diffuse
        # light, a horizontal one (floor, obstacle tops) sin(elevation).
        self._light = np.array([math.cos(lighting.azimuth), math.sin(lighting.azimuth)])
        self._ambient = lighting.ambient
        self._side_diffuse = lighting.diffuse * math.cos(_LIGHT_ELEVATION)
        self._top_shade = lighting.ambient + lighting.diffuse * math.sin(_LIGHT_ELEVATION)
        self._floor_rgb = (np.asarray(world.floor_color) * tint * 255.0 * self._top_shade)
        self._floor_base = TEXTURES.index(world.floor_texture) * _TEX * _TEX
        self._sky_rgb = np.asarray(_SKY_COLOR) * tint * 255.0

    def set_world(self, world: World) -> None:
        """
        Render ``world`` from now on (e.g. the same arena with its appearance re-drawn).

        Only the per-world tables are rebuilt (a few milliseconds); the per-pixel ones,
        which depend on the camera alone, are kept.
        """
        self.world = world
        self._prepare_world()

    # ------------------------------------------------------------------- rendering
    def _in_view(self, cam_x: float, cam_y: float, yaw: float) -> tuple[np.ndarray, np.ndarray]:
        """
        Return the indices of the segments and circles that some bin's ray can meet.

        With a 45° field of view most of the world is out of sight; dropping it first makes
        the per-frame ray cast cost about the same whatever the number of obstacles. A
        segment not through the camera subtends less than pi, between its endpoints'
        azimuths; a circle ``asin(r / d)`` either side of its centre's.
        """
        centre = yaw + self._view_centre
        half = self._view_half
        start = self._seg_start
        end = start + self._seg_edge
        a = np.arctan2(start[:, 1] - cam_y, start[:, 0] - cam_x) - centre
        b = np.arctan2(end[:, 1] - cam_y, end[:, 0] - cam_x) - centre
        a = (a + np.pi) % (2 * np.pi) - np.pi
        b = (b + np.pi) % (2 * np.pi) - np.pi
        low, high = np.minimum(a, b), np.maximum(a, b)
        across = high - low > np.pi  # the short way round passes behind the camera
        seen = np.where(across, (high <= half) | (low >= -half), (high >= -half) & (low <= half))
        segments = np.flatnonzero(seen)
        rel_x = self._circle_centre[:, 0] - cam_x
        rel_y = self._circle_centre[:, 1] - cam_y
        distance = np.hypot(rel_x, rel_y)
        bearing = (np.arctan2(rel_y, rel_x) - centre + np.pi) % (2 * np.pi) - np.pi
        inside = distance <= self._circle_radius
        spread = np.where(inside, np.pi, np.arcsin(
            np.minimum(1.0, self._circle_radius / np.maximum(distance, 1e-9))))
        circles = np.flatnonzero(np.abs(bearing) <= half + spread)
        return segments, circles

    def _cast(self, cam_x: float, cam_y: float, yaw: float) -> tuple[np.ndarray, ...]:
        """
        Cast one horizontal ray per bin; return the per-layer tables.

        Returns ``(distance, upper, texture_base, rgb)``: per bin × layer (the last layer of
        each bin is the sky) the horizontal distance, the largest slope that still meets
        it (``upper`` is ``(bins, layers)``, the rest flattened), the atlas offset of its
        texture column and its shaded colour.
        """
        cos_y, sin_y = math.cos(yaw), math.sin(yaw)
        dx = cos_y * self._bin_cos - sin_y * self._bin_sin
        dy = sin_y * self._bin_cos + cos_y * self._bin_sin
        mount_z = self.camera.mount_z
        bins = self._bins
        seg_index, circ_index = self._in_view(cam_x, cam_y, yaw)
        with np.errstate(divide='ignore', invalid='ignore'):
            # Segments: cam + t·d = start + w·edge.
            edge = self._seg_edge[seg_index]
            ex, ey = edge[:, 0], edge[:, 1]
            ax = self._seg_start[seg_index, 0] - cam_x
            ay = self._seg_start[seg_index, 1] - cam_y
            denom = dx[:, None] * ey - dy[:, None] * ex
            t_seg = (ax * ey - ay * ex) / denom
            w_seg = (ax * dy[:, None] - ay * dx[:, None]) / denom
            t_seg[~((t_seg > 1e-9) & (w_seg >= 0.0) & (w_seg <= 1.0))] = np.inf
            # Circles: |cam + t·d - centre| = r, entry and exit.
            fx = self._circle_centre[circ_index, 0] - cam_x
            fy = self._circle_centre[circ_index, 1] - cam_y
            b = dx[:, None] * fx + dy[:, None] * fy
            disc = b * b - (fx * fx + fy * fy - self._circle_radius[circ_index] ** 2)
            root = np.sqrt(disc)
            t_in, t_out = b - root, b + root
            t_in[~(t_in > 1e-9)] = np.inf
            t_out[~(t_out > 1e-9)] = np.inf
        # Columns in view: their segments, circle entries and exits, then the padding dummy.
        columns = np.concatenate((seg_index, self._n_seg + circ_index,
                                  self._n_seg + self._n_circ + circ_index,
                                  [len(self._col_height) - 1]))
        n_col = len(columns) - 1
        dist = np.concatenate((t_seg, t_in, t_out, np.full((bins, 1), np.inf)), axis=1)
        finite = np.isfinite(dist)
        with np.errstate(divide='ignore', invalid='ignore'):
            upper = np.where(finite, (self._col_height[columns] - mount_z) / dist, -np.inf)

        # Nearest first, then keep the rising skyline: only hits whose upper slope beats
        # every nearer hit's can be seen at all. Flat indices: take_along_axis is slower.
        row_base = (np.arange(bins) * (n_col + 1))[:, None]
        order = np.argsort(dist[:, :n_col], axis=1) + row_base
        upper_sorted = upper.ravel()[order]
        best_before = np.maximum.accumulate(upper_sorted, axis=1)
        visible = upper_sorted[:, 1:] > best_before[:, :-1]
        rank = np.where(visible, np.arange(1, n_col), n_col)
        layers = max(1, min(_MAX_LAYERS, n_col))
        rank = np.sort(rank, axis=1)[:, :layers - 1]
        # The nearest hit is always visible; padding points at the dummy column.
        order = np.concatenate((order, row_base + n_col), axis=1)
        flat = np.take_along_axis(order, np.concatenate((np.zeros((bins, 1), np.int64), rank),
                                                        axis=1), axis=1)
        dist = dist.ravel()[flat]
        upper = np.maximum.accumulate(upper.ravel()[flat], axis=1)
        finite = np.isfinite(dist)
        dist = np.where(finite, dist, 1.0)
        col = columns[flat - row_base]

        # Surface coordinates and normals at the hits.
        hit_x = cam_x + dist * dx[:, None]
        hit_y = cam_y + dist * dy[:, None]
        prim = self._col_prim[col]
        is_circle = self._col_is_circle[col]
        material = self._col_material[col]
        seg = np.minimum(prim, self._n_seg - 1)
        u = (self._seg_offset[seg]
             + (hit_x - self._seg_start[seg, 0]) * self._seg_unit[seg, 0]
             + (hit_y - self._seg_start[seg, 1]) * self._seg_unit[seg, 1])
        nx, ny = self._seg_normal[seg, 0], self._seg_normal[seg, 1]
        if len(circ_index):
            circle = np.minimum(prim, self._n_circ - 1)
            rel_x = hit_x - self._circle_centre[circle, 0]
            rel_y = hit_y - self._circle_centre[circle, 1]
            radius = self._circle_radius[circle]
            u = np.where(is_circle, radius * (np.arctan2(rel_y, rel_x) + np.pi), u)
            nx = np.where(is_circle, rel_x / radius, nx)
            ny = np.where(is_circle, rel_y / radius, ny)
        # A back face (seen from its inside) or a circle's exit is where the ray crossed
        # the obstacle's top.
        top = ((nx * dx[:, None] + ny * dy[:, None]) > 0) | self._col_exit[col]
        shade = np.where(top, self._top_shade,
                         self._ambient + self._side_diffuse
                         * np.maximum(0.0, nx * self._light[0] + ny * self._light[1]))
        shade *= np.exp(-_FOG * dist)
        rgb = self._material_color[material] * shade[..., None]
        column = ((u * (1 / _SURFACE_TEXEL) + _TEX_WRAP).astype(np.int64)
                  + self._material_shift[material]) & _TEX_MASK
        base = np.where(top, 0, self._material_slot[material] * (_TEX * _TEX) + column)
        # A ray that reaches a top has passed over the obstacle's edge above the floor, so
        # it meets the top whatever its height at the back face: distance 0 for the pixels
        # (their ray is then at mount_z, never under the floor; tops are untextured).
        dist = np.where(top, 0.0, dist)

        # Append the sky layer: distance 1 makes its texture row mount_z + slope.
        dist = np.concatenate((dist, np.ones((bins, 1))), axis=1)
        upper = np.concatenate((np.clip(upper, -_SLOPE_CLIP, _SLOPE_CLIP),
                                np.full((bins, 1), _SLOPE_CLIP)), axis=1)
        base = np.concatenate((base, np.full((bins, 1), _SKY_SLOT * _TEX * _TEX)), axis=1)
        rgb = np.concatenate((rgb, np.broadcast_to(self._sky_rgb, (bins, 1, 3))), axis=1)
        return dist.ravel(), upper, base.ravel(), rgb.reshape(-1, 3)

    def render(self, pose: tuple[float, float, float] | np.ndarray,
               rng: np.random.Generator | None = None) -> np.ndarray:
        """
        Render the image seen from the robot's ``pose`` = ``(x, y, yaw)`` of base_link.

        Returns ``(height, width, 3)`` uint8 RGB. Without ``rng`` the image is a
        deterministic function of the pose; with it, Gaussian noise of std ``noise`` is
        added to every channel (read from a precomputed bank at a random offset: drawing
        fresh normals would cost more than the rest of the frame).
        """
        x, y, yaw = (float(v) for v in pose)
        camera = self.camera
        cos_y, sin_y = math.cos(yaw), math.sin(yaw)
        cam_x, cam_y = x + camera.mount_x * cos_y, y + camera.mount_x * sin_y
        dist, upper, base, rgb = self._cast(cam_x, cam_y, yaw)

        # Each pixel's layer: layer k + 1 of a bin starts after its last slope ≤ upper[k].
        queries = (np.arange(self._bins)[:, None] * _KEY_STRIDE + upper[:, :-1]).ravel()
        starts = np.concatenate((self._bin_start, np.searchsorted(self._keys, queries, 'right')))
        n_pix = len(self._slope)
        layer = np.cumsum(np.bincount(starts, minlength=n_pix + 1)[:n_pix]) - 1

        slope = self._slope
        dist32 = dist.astype(np.float32)
        rise = slope * dist32[layer]
        floor = rise < -camera.mount_z
        row = ((rise + np.float32(camera.mount_z)) * np.float32(1 / _SURFACE_TEXEL)
               + np.float32(_TEX_WRAP)).astype(np.int32) & _TEX_MASK
        surface_index = base[layer] + row * _TEX
        scale = np.float32(1 / _FLOOR_TEXEL)
        fx = self._floor_ahead * np.float32(cos_y) - self._floor_left * np.float32(sin_y)
        fx += np.float32(cam_x * scale + _TEX_WRAP)
        fy = self._floor_ahead * np.float32(sin_y) + self._floor_left * np.float32(cos_y)
        fy += np.float32(cam_y * scale + _TEX_WRAP)
        floor_index = ((fy.astype(np.int32) & _TEX_MASK) * _TEX
                       + (fx.astype(np.int32) & _TEX_MASK) + self._floor_base)
        texture = self._atlas[np.where(floor, floor_index, surface_index)]
        intensity = np.where(floor, texture * self._floor_fog, texture)
        palette = np.concatenate((rgb, self._floor_rgb[None, :]), axis=0)
        colour_id = np.where(floor, len(palette) - 1, layer)

        # Back to image order, colour per channel (planar, which numpy gathers fastest).
        unsort = self._unsort
        channels = np.take(np.ascontiguousarray(palette.T, dtype=np.float32),
                           colour_id[unsort], axis=1)
        channels *= intensity[unsort]
        if rng is not None and self.noise > 0:
            channels += self._noise(rng, channels.size).reshape(channels.shape)
        np.clip(channels, 0.0, 255.0, out=channels)
        planes = channels.astype(np.uint8).reshape(3, camera.height, camera.width)
        if cv2 is not None:
            return cv2.merge(tuple(planes))
        return np.ascontiguousarray(planes.transpose(1, 2, 0))

    def _noise(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Return ``size`` Gaussian values of std ``noise`` from the bank, at a random offset."""
        bank = self._noise_bank
        if bank is None or len(bank) < size + _NOISE_SLACK or self._noise_std != self.noise:
            bank_rng = np.random.default_rng(zlib.crc32(b'camera-noise'))
            length = 2 * size + _NOISE_SLACK
            self._noise_bank = (bank_rng.standard_normal(length, np.float32)
                                * np.float32(self.noise))
            self._noise_std = self.noise
        offset = int(rng.integers(0, len(self._noise_bank) - size + 1))
        return self._noise_bank[offset:offset + size]
