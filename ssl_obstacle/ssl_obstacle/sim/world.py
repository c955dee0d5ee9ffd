"""
The built-in world: a walled arena with obstacles, as plain data.

Everything in the arena is a vertical prism standing on the floor: boxes, cylinders and
thin walls, each with a height, a colour and a texture. That is enough for a camera to see
perspective, occlusion and varied appearance, and for the 2-D geometry of proximity
sensors, collisions and ground-truth labels. :meth:`World.primitives` flattens a world into
numpy arrays of segments and circles that the sensors, the collision test and the renderer
all use, so they can never disagree about where an obstacle is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

#: Textures an obstacle or the floor may have (the renderer draws them).
TEXTURES = ('plain', 'stripes', 'checker', 'noise')


@dataclass(frozen=True)
class Obstacle:
    """
    One obstacle standing on the floor.

    ``kind`` is ``'box'`` (``length`` along its own x, ``width`` along y), ``'cylinder'``
    (``radius``) or ``'wall'`` (a thin box: ``length`` × ``width`` with a small width).
    ``x, y, yaw`` place its centre in the world frame.
    """

    kind: str
    x: float
    y: float
    yaw: float = 0.0
    length: float = 0.1
    width: float = 0.1
    radius: float = 0.05
    height: float = 0.1
    color: tuple[float, float, float] = (0.8, 0.2, 0.2)
    texture: str = 'plain'

    def __post_init__(self) -> None:
        if self.kind not in ('box', 'cylinder', 'wall'):
            raise ValueError(f'unknown obstacle kind {self.kind!r}')
        if self.texture not in TEXTURES:
            raise ValueError(f'unknown texture {self.texture!r}')

    def corners(self) -> np.ndarray:
        """Return the four corners of a box or wall footprint, counter-clockwise."""
        half_l, half_w = self.length / 2, self.width / 2
        local = np.array([[half_l, half_w], [-half_l, half_w],
                          [-half_l, -half_w], [half_l, -half_w]])
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return local @ np.array([[c, s], [-s, c]]) + (self.x, self.y)


@dataclass(frozen=True)
class Lighting:
    """Directional light plus ambient; ``azimuth`` is where the light comes from."""

    ambient: float = 0.45
    diffuse: float = 0.55
    azimuth: float = 0.8
    #: Multiplies every colour: per-run colour variation so models cannot memorise a scene.
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class Primitives:
    """
    A world flattened for vectorised geometry.

    Segments are the sides of walls, boxes and the arena; circles are cylinders. Each row
    carries the index of its obstacle (``-1`` for the arena walls) so that a hit can be
    coloured and textured.
    """

    segments: np.ndarray  # (N, 4) x0, y0, x1, y1
    segment_height: np.ndarray  # (N,)
    segment_owner: np.ndarray  # (N,) obstacle index, -1 = arena wall
    circles: np.ndarray  # (M, 3) x, y, radius
    circle_height: np.ndarray  # (M,)
    circle_owner: np.ndarray  # (M,)


@dataclass(frozen=True)
class World:
    """A rectangular arena ``size_x × size_y`` centred on the origin, with obstacles."""

    name: str
    size_x: float = 2.0
    size_y: float = 2.0
    wall_height: float = 0.2
    wall_color: tuple[float, float, float] = (0.85, 0.85, 0.8)
    wall_texture: str = 'plain'
    floor_color: tuple[float, float, float] = (0.55, 0.45, 0.35)
    floor_texture: str = 'checker'
    obstacles: tuple[Obstacle, ...] = ()
    lighting: Lighting = field(default_factory=Lighting)
    #: Seeds the renderer's noise texture and texture offsets; 0: derived from ``name``.
    texture_seed: int = 0

    def primitives(self) -> Primitives:
        """Flatten to segments and circles (computed once per world; worlds are immutable)."""
        cached = self.__dict__.get('_primitives')
        if cached is not None:
            return cached
        segments, heights, owners = [], [], []
        hx, hy = self.size_x / 2, self.size_y / 2
        arena = [(-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy)]
        for i in range(4):
            segments.append((*arena[i], *arena[(i + 1) % 4]))
            heights.append(self.wall_height)
            owners.append(-1)
        circles, circle_heights, circle_owners = [], [], []
        for index, obstacle in enumerate(self.obstacles):
            if obstacle.kind == 'cylinder':
                circles.append((obstacle.x, obstacle.y, obstacle.radius))
                circle_heights.append(obstacle.height)
                circle_owners.append(index)
                continue
            corners = obstacle.corners()
            for i in range(4):
                segments.append((*corners[i], *corners[(i + 1) % 4]))
                heights.append(obstacle.height)
                owners.append(index)
        result = Primitives(
            segments=np.asarray(segments, dtype=np.float64).reshape(-1, 4),
            segment_height=np.asarray(heights, dtype=np.float64),
            segment_owner=np.asarray(owners, dtype=np.int64),
            circles=np.asarray(circles, dtype=np.float64).reshape(-1, 3),
            circle_height=np.asarray(circle_heights, dtype=np.float64),
            circle_owner=np.asarray(circle_owners, dtype=np.int64),
        )
        object.__setattr__(self, '_primitives', result)
        return result


# ---------------------------------------------------------------------------- layouts
_RED, _GREEN, _BLUE = (0.8, 0.15, 0.1), (0.15, 0.6, 0.2), (0.15, 0.3, 0.8)
_YELLOW, _WHITE, _DARK = (0.9, 0.8, 0.15), (0.92, 0.92, 0.9), (0.2, 0.2, 0.25)


def _boxes() -> World:
    """Boxes of several sizes and colours scattered in a 2 m arena."""
    return World('boxes', obstacles=(
        Obstacle('box', 0.45, 0.35, 0.3, 0.2, 0.15, height=0.12, color=_RED),
        Obstacle('box', -0.5, -0.4, -0.5, 0.3, 0.1, height=0.08, color=_BLUE,
                 texture='stripes'),
        Obstacle('box', 0.35, -0.55, 0.0, 0.12, 0.12, height=0.15, color=_YELLOW),
        Obstacle('box', -0.45, 0.5, 0.9, 0.25, 0.2, height=0.1, color=_GREEN,
                 texture='checker'),
        Obstacle('cylinder', 0.0, 0.0, radius=0.08, height=0.2, color=_DARK),
    ))


def _pillars() -> World:
    """Cylinders of several radii: the robot has to see round, narrow things."""
    rng = np.random.default_rng(11)
    obstacles = []
    for x, y in [(-0.6, -0.6), (-0.6, 0.1), (-0.1, 0.6), (0.4, 0.4), (0.6, -0.3),
                 (0.0, -0.45), (-0.25, -0.05), (0.25, 0.05)]:
        obstacles.append(Obstacle('cylinder', x, y, radius=float(rng.uniform(0.03, 0.1)),
                                  height=float(rng.uniform(0.08, 0.25)),
                                  color=tuple(float(c) for c in rng.uniform(0.1, 0.9, 3)),
                                  texture=str(rng.choice(['plain', 'stripes', 'noise']))))
    return World('pillars', size_x=1.8, size_y=1.8, floor_texture='noise',
                 obstacles=tuple(obstacles))


def _walls() -> World:
    """Thin walls making corridors and corners, in a 2.4 × 2 m arena."""
    return World('walls', size_x=2.4, size_y=2.0, floor_color=(0.35, 0.38, 0.42),
                 wall_color=(0.7, 0.75, 0.85), obstacles=(
                     Obstacle('wall', -0.4, 0.3, 0.0, 0.9, 0.02, height=0.15, color=_WHITE),
                     Obstacle('wall', 0.5, -0.2, np.pi / 2, 0.8, 0.02, height=0.15,
                              color=_RED, texture='stripes'),
                     Obstacle('wall', -0.2, -0.5, 0.4, 0.5, 0.02, height=0.1, color=_BLUE),
                     Obstacle('box', 0.7, 0.6, 0.2, 0.15, 0.15, height=0.1, color=_YELLOW),
                     Obstacle('cylinder', -0.8, -0.6, radius=0.06, height=0.12,
                              color=_GREEN),
                 ))


_LAYOUTS = {'boxes': _boxes, 'pillars': _pillars, 'walls': _walls}
#: Names accepted by :func:`make_world` besides ``'random'``.
WORLD_NAMES: tuple[str, ...] = tuple(_LAYOUTS)


def random_world(seed: int, size: float = 2.0, count: int = 8,
                 clearance: float = 0.3) -> World:
    """
    Generate a seeded arena with ``count`` obstacles of random kind, size, colour, texture.

    Obstacles keep ``clearance`` from each other, the walls and the centre (where the robot
    starts), so the robot always has room to move.
    """
    rng = np.random.default_rng(seed)
    obstacles: list[Obstacle] = []
    half = size / 2
    attempts = 0
    while len(obstacles) < count and attempts < 1000:
        attempts += 1
        kind = str(rng.choice(['box', 'cylinder', 'wall'], p=[0.45, 0.35, 0.2]))
        x, y = rng.uniform(-half + clearance, half - clearance, 2)
        if np.hypot(x, y) < clearance + 0.1:
            continue
        if any(np.hypot(x - o.x, y - o.y) < clearance + 0.15 for o in obstacles):
            continue
        color = tuple(float(c) for c in rng.uniform(0.05, 0.95, 3))
        texture = str(rng.choice(TEXTURES))
        height = float(rng.uniform(0.06, 0.25))
        yaw = float(rng.uniform(-np.pi, np.pi))
        if kind == 'cylinder':
            obstacle = Obstacle('cylinder', x, y, radius=float(rng.uniform(0.03, 0.1)),
                                height=height, color=color, texture=texture)
        elif kind == 'box':
            obstacle = Obstacle('box', x, y, yaw, float(rng.uniform(0.08, 0.25)),
                                float(rng.uniform(0.08, 0.25)), height=height, color=color,
                                texture=texture)
        else:
            obstacle = Obstacle('wall', x, y, yaw, float(rng.uniform(0.2, 0.4)), 0.02,
                                height=height, color=color, texture=texture)
        obstacles.append(obstacle)
    return World(f'random-{seed}', size_x=size, size_y=size,
                 floor_color=tuple(float(c) for c in rng.uniform(0.2, 0.7, 3)),
                 floor_texture=str(rng.choice(TEXTURES)), obstacles=tuple(obstacles))


def varied(world: World, seed: int, amount: float = 0.15) -> World:
    """Return ``world`` under different light and tint: same geometry, new appearance."""
    rng = np.random.default_rng(seed)
    lighting = Lighting(ambient=float(np.clip(0.45 + rng.normal(0, amount), 0.2, 0.7)),
                        diffuse=float(np.clip(0.55 + rng.normal(0, amount), 0.2, 0.8)),
                        azimuth=float(rng.uniform(-np.pi, np.pi)),
                        tint=tuple(float(t) for t in np.clip(1 + rng.normal(0, amount, 3),
                                                             0.7, 1.3)))
    return replace(world, lighting=lighting)


def _random_color(rng: np.random.Generator, low: float = 0.05,
                  high: float = 0.95) -> tuple[float, float, float]:
    """Draw an rgb colour, each channel uniform in ``[low, high]``."""
    return tuple(float(c) for c in rng.uniform(low, high, 3))


def redraw_appearance(world: World, seed: int | np.random.Generator) -> World:
    """
    Return ``world`` with everything a camera sees re-drawn and its geometry untouched.

    Obstacle, floor and wall colours and textures, the texture noise pattern and the
    lighting (ambient, diffuse, azimuth, tint) are drawn anew; kinds, positions, sizes and
    heights stay exactly as they were, so the IR sensors, collisions and ground-truth
    labels of every pose are unchanged. A robot driving in a world re-drawn every few
    seconds sees the same obstacles stop it under ever different colours and light, so
    what its labels can teach is geometry, not the look of one room (domain
    randomisation, Tobin et al. 2017).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    obstacles = tuple(replace(o, color=_random_color(rng), texture=str(rng.choice(TEXTURES)))
                      for o in world.obstacles)
    lighting = Lighting(ambient=float(rng.uniform(0.25, 0.65)),
                        diffuse=float(rng.uniform(0.25, 0.75)),
                        azimuth=float(rng.uniform(-np.pi, np.pi)),
                        tint=tuple(float(t) for t in rng.uniform(0.75, 1.25, 3)))
    redrawn = replace(world, obstacles=obstacles, lighting=lighting,
                      floor_color=_random_color(rng, 0.15, 0.85),
                      floor_texture=str(rng.choice(TEXTURES)),
                      wall_color=_random_color(rng, 0.15, 0.95),
                      wall_texture=str(rng.choice(TEXTURES)),
                      texture_seed=int(rng.integers(1, 2 ** 31)))
    # Same geometry, so the same flattened primitives: share them instead of recomputing.
    object.__setattr__(redrawn, '_primitives', world.primitives())
    return redrawn


def same_geometry(a: World, b: World) -> bool:
    """Tell whether two worlds have the same arena and obstacles, whatever they look like."""
    shape = ('kind', 'x', 'y', 'yaw', 'length', 'width', 'radius', 'height')
    return ((a.size_x, a.size_y, a.wall_height) == (b.size_x, b.size_y, b.wall_height)
            and len(a.obstacles) == len(b.obstacles)
            and all(tuple(getattr(p, k) for k in shape) == tuple(getattr(q, k) for k in shape)
                    for p, q in zip(a.obstacles, b.obstacles)))


def make_world(name: str, seed: int = 0, vary: bool = False) -> World:
    """Return a named layout, or ``'random'`` generated from ``seed``; ``vary`` relights it."""
    if name == 'random':
        world = random_world(seed)
    elif name in _LAYOUTS:
        world = _LAYOUTS[name]()
    else:
        raise ValueError(f'unknown world {name!r}; known: {", ".join(WORLD_NAMES)}, random')
    return varied(world, seed) if vary else world


def obstacle_colors(world: World) -> Sequence[tuple[float, float, float]]:
    """Return the colour of every obstacle, by index (for renderers and plots)."""
    return [o.color for o in world.obstacles]
