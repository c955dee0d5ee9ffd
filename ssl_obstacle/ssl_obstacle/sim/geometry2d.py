"""
Vectorised 2-D geometry on a world's primitives: ray casting and footprint tests.

The IR sensors, the collision test and the ground-truth labels all ask these two questions
of the same :meth:`~.world.World.primitives`, so they can never disagree about where an
obstacle is. Every function works on arrays of rays or points × all primitives at once:
the simulator casts a few hundred rays per ground-truth grid and a Python loop over them
would cost more than the rest of the simulation.

Conventions that matter at the edges:

- A ray whose origin lies inside an obstacle (a cylinder or a box/wall footprint) or on
  its boundary hits it at distance 0: a sensor pressed into an obstacle sees it as close
  as possible, never the far side of it.
- Only primitives taller than ``min_height`` block rays (an IR sensor mounted 3 cm above
  the floor does not see a 2 cm tall obstacle); footprints collide with everything.
- Touching counts as overlapping, so a body is free only with a positive gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .world import Primitives, World

#: Tolerance for rays that start on a segment (rounding puts them a hair behind it).
_EPS = 1e-12


@dataclass(frozen=True)
class _Scene:
    """
    Primitives rearranged for the vectorised tests (computed once per world).

    Box and wall footprints are kept as polygons (G, K, 2) so that the point-in-footprint
    test and the culling work per obstacle; the arena walls are plain segments.
    """

    wall_a: np.ndarray  # (W, 2) segment start
    wall_e: np.ndarray  # (W, 2) segment end - start
    wall_height: np.ndarray  # (W,)
    wall_box: np.ndarray  # (W, 4) xmin, ymin, xmax, ymax
    poly_a: np.ndarray  # (G, K, 2) edge starts of each footprint
    poly_e: np.ndarray  # (G, K, 2) edge vectors
    poly_height: np.ndarray  # (G,)
    poly_box: np.ndarray  # (G, 4)
    circles: np.ndarray  # (M, 3) x, y, radius
    circle_height: np.ndarray  # (M,)
    circle_box: np.ndarray  # (M, 4)
    half_x: float
    half_y: float
    # Footprints, walls and circles together, for culling in one pass.
    all_box: np.ndarray  # (G + W + M, 4)
    all_height: np.ndarray  # (G + W + M,)
    splits: tuple[int, int]  # where the walls and the circles start in all_*


# World.primitives() is cached on the (immutable) world, so its id identifies the world's
# geometry; the Primitives object is kept alive next to its scene so the id cannot be
# reused by another object while the entry exists.
_SCENES: dict[int, tuple[Primitives, _Scene]] = {}
_MAX_SCENES = 32


def _boxes_of_segments(a: np.ndarray, e: np.ndarray) -> np.ndarray:
    b = a + e
    return np.concatenate((np.minimum(a, b), np.maximum(a, b)), axis=-1)


def _scene(world: World) -> _Scene:
    prims = world.primitives()
    entry = _SCENES.get(id(prims))
    if entry is not None and entry[0] is prims:
        return entry[1]
    segments = np.asarray(prims.segments, dtype=np.float64)
    owners = prims.segment_owner
    heights = np.asarray(prims.segment_height, dtype=np.float64)
    walls = owners < 0
    wall_a = segments[walls, :2]
    wall_e = segments[walls, 2:] - wall_a
    # Footprint edges come in consecutive runs per obstacle; pad shorter runs by repeating
    # their last edge (a duplicate edge changes neither hits nor the inside test).
    groups = [np.flatnonzero(owners == owner) for owner in np.unique(owners[~walls])]
    size = max((len(group) for group in groups), default=1)
    rows = np.array([np.concatenate((g, np.repeat(g[-1:], size - len(g)))) for g in groups],
                    dtype=np.int64).reshape(-1, size)
    poly_a = segments[rows, :2].reshape(-1, size, 2)
    poly_e = segments[rows, 2:].reshape(-1, size, 2) - poly_a
    poly_boxes = _boxes_of_segments(poly_a, poly_e)
    poly_box = np.concatenate((poly_boxes[..., :2].min(axis=1), poly_boxes[..., 2:].max(axis=1)),
                              axis=-1).reshape(-1, 4)
    circles = np.asarray(prims.circles, dtype=np.float64).reshape(-1, 3)
    circle_box = np.concatenate((circles[:, :2] - circles[:, 2:], circles[:, :2] + circles[:, 2:]),
                                axis=-1)
    wall_box = _boxes_of_segments(wall_a, wall_e)
    poly_height = heights[rows[:, 0]] if len(rows) else np.zeros(0)
    circle_height = np.asarray(prims.circle_height, dtype=np.float64)
    scene = _Scene(wall_a=wall_a, wall_e=wall_e, wall_height=heights[walls],
                   wall_box=wall_box, poly_a=poly_a, poly_e=poly_e, poly_height=poly_height,
                   poly_box=poly_box, circles=circles, circle_height=circle_height,
                   circle_box=circle_box, half_x=world.size_x / 2, half_y=world.size_y / 2,
                   all_box=np.concatenate((poly_box, wall_box, circle_box)),
                   all_height=np.concatenate((poly_height, heights[walls], circle_height)),
                   splits=(len(poly_box), len(poly_box) + len(wall_box)))
    if len(_SCENES) >= _MAX_SCENES:
        _SCENES.pop(next(iter(_SCENES)))
    _SCENES[id(prims)] = (prims, scene)
    return scene


def _select(scene: _Scene, points: np.ndarray, reach: float, min_height: float
            ) -> tuple[np.ndarray, np.ndarray, int, int, np.ndarray]:
    """
    Gather the primitives that matter for ``points`` within ``reach``, footprints first.

    Returns segment starts (S, 2), edge vectors (S, 2), the number of footprints G and
    their edge count K (the first G·K segments, in footprint order) and the circles.
    """
    keep = scene.all_height > min_height
    if np.isfinite(reach):
        low_x, low_y = points.min(axis=0) - reach
        high_x, high_y = points.max(axis=0) + reach
        boxes = scene.all_box
        keep &= ((boxes[:, 0] <= high_x) & (boxes[:, 2] >= low_x)
                 & (boxes[:, 1] <= high_y) & (boxes[:, 3] >= low_y))
    polys, walls, circles = np.split(keep, scene.splits)
    count, size = int(polys.sum()), scene.poly_a.shape[1]
    a = np.concatenate((scene.poly_a[polys].reshape(-1, 2), scene.wall_a[walls]))
    e = np.concatenate((scene.poly_e[polys].reshape(-1, 2), scene.wall_e[walls]))
    return a, e, count, size, scene.circles[circles]


def _inside(side: np.ndarray, count: int, size: int) -> np.ndarray:
    """
    Return (N,): whether each point lies inside (or on) any of the ``count`` footprints.

    ``side`` (N, S) holds ``e × (p - a)`` for every point and segment, footprints first;
    both callers compute it anyway. Footprints are convex, so a point is inside when it
    lies on the same side of every edge; testing both signs makes the winding irrelevant.
    """
    side = side[:, :count * size].reshape(side.shape[0], count, size)
    return ((side.min(axis=2) >= -_EPS) | (side.max(axis=2) <= _EPS)).any(axis=1)


def ray_cast(world: World, origins: np.ndarray, angles: np.ndarray,
             max_range: float = np.inf, min_height: float = 0.0) -> np.ndarray:
    """
    Return the distance along each ray to the first primitive taller than ``min_height``.

    ``origins`` is (R, 2) and ``angles`` (R,) in the world frame; the result is (R,), with
    ``inf`` where nothing lies within ``max_range``. Rays starting inside or on an
    obstacle return 0 (see the module docstring). With a finite ``max_range`` only the
    primitives near the rays are tested, which is what makes short sensor rays cheap.
    """
    scene = _scene(world)
    origins = np.asarray(origins, dtype=np.float64).reshape(-1, 2)
    angles = np.asarray(angles, dtype=np.float64).reshape(-1)
    best = np.full(origins.shape[0], np.inf)
    if origins.shape[0] == 0:
        return best
    a, e, count, size, circles = _select(scene, origins, max_range, min_height)
    dir_x, dir_y = np.cos(angles)[:, None], np.sin(angles)[:, None]
    ox, oy = origins[:, 0, None], origins[:, 1, None]

    if a.shape[0]:
        # Ray o + t d meets segment a + u e where t = (a-o)×e / d×e, u = (a-o)×d / d×e.
        # The numerator of t, e × (o - a), also says on which side of the segment o
        # lies, which is the point-in-footprint test.
        e_x, e_y = e[None, :, 0], e[None, :, 1]
        ao_x = a[None, :, 0] - ox
        ao_y = a[None, :, 1] - oy
        side = ao_x * e_y - ao_y * e_x
        with np.errstate(divide='ignore', invalid='ignore'):
            inv = 1.0 / (dir_x * e_y - dir_y * e_x)
            t = side * inv
            u = (ao_x * dir_y - ao_y * dir_x) * inv
        # Parallel rays (denominator 0) give inf/nan and fail these tests, as they should.
        hit = (t >= -_EPS) & (u >= -_EPS) & (u <= 1.0 + _EPS)
        best = np.where(hit, np.maximum(t, 0.0), np.inf).min(axis=1)
        if count:
            best[_inside(side, count, size)] = 0.0

    if circles.shape[0]:
        off_x = ox - circles[None, :, 0]
        off_y = oy - circles[None, :, 1]
        b = off_x * dir_x + off_y * dir_y
        c = off_x * off_x + off_y * off_y - circles[None, :, 2] ** 2
        disc = b * b - c
        with np.errstate(invalid='ignore'):
            t = -b - np.sqrt(disc)
        t = np.where(c <= 0.0, 0.0, np.where((disc >= 0.0) & (t >= 0.0), t, np.inf))
        best = np.minimum(best, t.min(axis=1))

    best[best > max_range] = np.inf
    return best


def distance_to_obstacles(world: World, points: np.ndarray,
                          max_distance: float = np.inf) -> np.ndarray:
    """
    Return (N,): each point's distance to the nearest obstacle or arena wall.

    Zero inside an obstacle or outside the arena. A disc of radius ``r`` centred on a point
    is free exactly when this exceeds ``r``; the robot model keeps the value to skip the
    full test while it moves less than its clearance. With a finite ``max_distance`` only
    nearby primitives are tested and larger distances may come back as ``inf``.
    """
    scene = _scene(world)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    best = np.full(points.shape[0], np.inf)
    if points.shape[0] == 0:
        return best
    a, e, count, size, circles = _select(scene, points, max_distance, -np.inf)
    px, py = points[:, 0, None], points[:, 1, None]
    if a.shape[0]:
        e_x, e_y = e[None, :, 0], e[None, :, 1]
        rel_x = px - a[None, :, 0]
        rel_y = py - a[None, :, 1]
        u = (rel_x * e_x + rel_y * e_y) / np.maximum(e_x * e_x + e_y * e_y, 1e-300)
        np.clip(u, 0.0, 1.0, out=u)
        dx = rel_x - u * e_x
        dy = rel_y - u * e_y
        best = np.sqrt((dx * dx + dy * dy).min(axis=1))
        if count:
            best[_inside(e_x * rel_y - e_y * rel_x, count, size)] = 0.0
    if circles.shape[0]:
        gap = np.hypot(px - circles[None, :, 0], py - circles[None, :, 1]) - circles[None, :, 2]
        best = np.minimum(best, np.maximum(gap, 0.0).min(axis=1))
    outside = (np.abs(points[:, 0]) >= scene.half_x) | (np.abs(points[:, 1]) >= scene.half_y)
    best[outside] = 0.0
    return best


def footprint_overlaps(world: World, positions: np.ndarray, radius: float) -> np.ndarray:
    """
    Return (N,) bools: whether a disc of ``radius`` at each position hits anything.

    Overlapping an obstacle, touching or crossing an arena wall, or lying outside the arena
    all count, whatever the obstacle's height (the body is as tall as any of them).
    """
    return distance_to_obstacles(world, positions, max_distance=radius) <= radius
