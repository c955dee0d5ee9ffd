"""The simulated camera (sim/camera.py): perspective, occlusion, textures and noise."""

from dataclasses import replace
import math

import numpy as np
import pytest

from ssl_obstacle.sim.camera import CameraModel, FLOOR_CHECKER_PERIOD, Renderer
from ssl_obstacle.sim.world import (make_world, Obstacle, redraw_appearance, World,
                                    WORLD_NAMES)

RED = (0.9, 0.05, 0.05)
BLUE = (0.05, 0.1, 0.9)
FLOOR = (0.45, 0.5, 0.4)


def scene(*obstacles: Obstacle, floor_texture: str = 'plain', **kwargs) -> World:
    """Return a 3 m arena with a plain floor unlike any obstacle colour."""
    return World('test', size_x=3.0, size_y=3.0, floor_color=FLOOR, floor_texture=floor_texture,
                 obstacles=obstacles, **kwargs)


def red(image: np.ndarray) -> np.ndarray:
    """Return where the image shows the red obstacle (under any shade)."""
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return (r > 50) & (r > 3 * g) & (r > 3 * b)


def blue(image: np.ndarray) -> np.ndarray:
    """Return where the image shows the blue obstacle (under any shade)."""
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return (b > 50) & (b > 3 * r) & (b > 2 * g)


def column_centroid(mask: np.ndarray) -> float:
    """Return the mean column of a mask's pixels."""
    return float(np.nonzero(mask)[1].mean())


def mask_width(mask: np.ndarray) -> int:
    """Return how many columns of the mask hold at least one pixel."""
    return int(mask.any(axis=0).sum())


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Return intersection over union of two masks."""
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.mark.parametrize('size', [(160, 120), (320, 240), (640, 480), (200, 200)])
def test_intrinsics_follow_the_field_of_view_with_square_pixels(size):
    camera = CameraModel(*size)
    fx, fy, cx, cy = camera.intrinsics()
    assert fx == pytest.approx((size[0] / 2) / math.tan(math.radians(45.0) / 2))
    assert fy == fx
    assert (cx, cy) == ((size[0] - 1) / 2, (size[1] - 1) / 2)


def test_default_camera_sees_the_floor_near_and_far_and_the_horizon():
    camera = CameraModel()
    fx, fy, cx, cy = camera.intrinsics()
    # Bottom row meets the floor within ~10 cm of the lens; the horizon is inside the image.
    below = camera.pitch + math.atan((camera.height - 1 - cy) / fy)
    assert camera.mount_z / math.tan(below) < 0.1
    horizon_row = cy - fy * math.tan(camera.pitch)
    assert 0 < horizon_row < camera.height / 4
    # The floor 60 cm ahead of the robot is in view.
    u, v, depth = camera.project((0.0, 0.0, 0.0), np.array([0.6, 0.0, 0.0]))
    assert depth > 0 and 0 <= v < camera.height and u == pytest.approx(cx)


def test_an_obstacle_dead_ahead_is_centred_and_grows_as_the_robot_approaches():
    renderer = Renderer(scene(Obstacle('box', 0.8, 0.0, 0.0, 0.1, 0.1, height=0.15, color=RED)))
    cx = renderer.camera.intrinsics()[2]
    masks = [red(renderer.render((x, 0.0, 0.0))) for x in (0.0, 0.2, 0.4)]
    for mask in masks:
        assert mask.sum() > 50
        assert column_centroid(mask) == pytest.approx(cx, abs=1.0)
    areas = [int(mask.sum()) for mask in masks]
    widths = [mask_width(mask) for mask in masks]
    assert areas[0] < areas[1] < areas[2]
    assert widths[0] < widths[1] < widths[2]
    # Apparent width follows the pinhole model: the face's edges at 5 cm high project onto
    # the mask's extent in that row (azimuth bins of half a pixel: within a third of a
    # pixel, plus rounding to pixel centres).
    for x, mask in zip((0.0, 0.2, 0.4), masks):
        (u0, v0, _), (u1, v1, _) = renderer.camera.project(
            (x, 0.0, 0.0), np.array([[0.75, 0.05, 0.05], [0.75, -0.05, 0.05]]))
        assert v0 == pytest.approx(v1)
        cols = np.flatnonzero(mask[int(round(v0))])
        assert cols.min() == pytest.approx(u0, abs=1.4)
        assert cols.max() == pytest.approx(u1, abs=1.4)


def test_turning_right_pans_the_scene_to_the_left():
    renderer = Renderer(scene(Obstacle('cylinder', 0.7, 0.0, radius=0.05, height=0.2,
                                       color=RED)))
    cx = renderer.camera.intrinsics()[2]
    right = column_centroid(red(renderer.render((0.0, 0.0, -0.2))))
    left = column_centroid(red(renderer.render((0.0, 0.0, 0.2))))
    assert right < cx - 40
    assert left > cx + 40
    assert right == pytest.approx(2 * cx - left, abs=1.0)


def test_a_short_near_box_hides_the_tall_far_wall_only_below_its_top_edge():
    world = scene(Obstacle('box', 0.45, 0.0, 0.0, 0.1, 0.2, height=0.05, color=RED),
                  Obstacle('wall', 1.0, 0.0, math.pi / 2, 1.2, 0.02, height=0.25, color=BLUE))
    image = Renderer(world).render((0.0, 0.0, 0.0))
    near, far = red(image), blue(image)
    columns = np.flatnonzero(near.any(axis=0))
    assert len(columns) > 40
    for col in columns:
        rows = np.flatnonzero(near[:, col])
        # One contiguous block: nothing of the far wall shows through the near box.
        assert rows[-1] - rows[0] + 1 == len(rows)
    # Where the box is seen to its full height (not its keystoned side edges, beside which
    # the wall's foot is rightly visible), the far wall shows above it and only there.
    heights = near.sum(axis=0)
    for col in np.flatnonzero(heights >= heights.max() - 1):
        rows = np.flatnonzero(near[:, col])
        far_rows = np.flatnonzero(far[:, col])
        assert len(far_rows) > 5
        assert far_rows.max() < rows[0]
    # The near box hides part of the wall: without it, more blue shows.
    alone = Renderer(scene(world.obstacles[1])).render((0.0, 0.0, 0.0))
    assert blue(alone).sum() > far.sum() + 100


def test_a_tall_near_obstacle_hides_a_short_far_one_completely():
    world = scene(Obstacle('box', 0.45, 0.0, 0.0, 0.1, 0.3, height=0.2, color=BLUE),
                  Obstacle('box', 0.9, 0.0, 0.0, 0.1, 0.1, height=0.05, color=RED))
    image = Renderer(world).render((0.0, 0.0, 0.0))
    assert blue(image).sum() > 1000
    assert red(image).sum() == 0


def test_the_top_of_an_obstacle_lower_than_the_camera_is_seen_from_edge_to_edge():
    # A flat mat: the ray passes over its front edge and meets its top, never the floor.
    mat = Obstacle('box', 0.5, 0.0, 0.0, 0.4, 0.3, height=0.01, color=RED)
    renderer = Renderer(scene(mat))
    camera = renderer.camera
    cx = int(round(camera.intrinsics()[2]))
    rows = np.flatnonzero(red(renderer.render((0.0, 0.0, 0.0)))[:, cx])
    assert rows[-1] - rows[0] + 1 == len(rows)
    (_, near, _), (_, far, _) = camera.project((0.0, 0.0, 0.0),
                                               np.array([[0.3, 0.0, 0.0], [0.7, 0.0, 0.01]]))
    assert rows[0] == pytest.approx(far, abs=1.0)
    assert rows[-1] == pytest.approx(near, abs=1.0)


def test_a_cylinder_looks_the_same_and_symmetric_from_opposite_sides():
    renderer = Renderer(scene(Obstacle('cylinder', 0.3, 0.1, radius=0.07, height=0.2,
                                       color=RED)))
    front = red(renderer.render((-0.2, 0.1, 0.0)))
    back = red(renderer.render((0.8, 0.1, math.pi)))
    assert front.sum() > 2000
    assert iou(front, back) > 0.98
    assert iou(front, front[:, ::-1]) > 0.98
    # Lambertian shading: lit from azimuth 0.8 (ahead, left), the left edge is brighter.
    image = renderer.render((-0.2, 0.1, 0.0))
    rows, cols = np.nonzero(front)
    row = int(np.median(rows))
    lit = image[row, cols[rows == row].min() + 1, 0]
    unlit = image[row, cols[rows == row].max() - 1, 0]
    assert int(lit) > int(unlit) + 10


def test_the_floor_fills_the_lower_rows_and_its_texture_is_anchored_to_the_world():
    renderer = Renderer(scene(floor_texture='checker'))
    image = renderer.render((0.1, 0.2, 0.3))
    bottom = image[-renderer.camera.height // 3:]
    floor_colour = np.array(FLOOR) * 255
    # Lit floor, either checker shade, under mild distance darkening.
    ratio = bottom.reshape(-1, 3) / floor_colour
    assert np.allclose(ratio, ratio[:, :1], atol=0.05)
    assert ratio[:, 0].max() > 1.3 * ratio[:, 0].min()  # light and dark squares
    moved = renderer.render((0.1 + FLOOR_CHECKER_PERIOD, 0.2, 0.3))
    same = (moved[-renderer.camera.height // 3:] == bottom).all(axis=2).mean()
    assert same > 0.995
    half = renderer.render((0.1 + FLOOR_CHECKER_PERIOD / 2, 0.2, 0.3))
    assert (half[-renderer.camera.height // 3:] == bottom).all(axis=2).mean() < 0.5


def test_obstacle_textures_are_anchored_to_the_obstacle():
    # Stripes are 16 texels of 2.5 mm: moving one period along a fronto-parallel wall
    # shows the same picture; half a period swaps light and dark stripes.
    period = 2 * 16 * 0.0025
    renderer = Renderer(scene(Obstacle('wall', 0.8, 0.0, math.pi / 2, 2.0, 0.02, height=0.25,
                                       color=BLUE, texture='stripes')))
    image = renderer.render((0.0, 0.0, 0.0))
    wall = blue(image)
    assert wall[:20].all()
    assert image[10, :, 2].max() > 1.4 * image[10, :, 2].min()  # light and dark stripes
    same = renderer.render((0.0, period, 0.0))
    assert (same == image).all(axis=2).mean() > 0.995
    half = renderer.render((0.0, period / 2, 0.0))
    assert (half[wall] != image[wall]).any(axis=1).mean() > 0.9


def test_the_sky_shows_above_low_walls_when_the_camera_looks_up():
    world = scene(wall_height=0.1)
    image = Renderer(world, CameraModel(pitch=math.radians(-5.0))).render((0.0, 0.0, 0.0))
    top = image[0].astype(int)
    assert (top[:, 2] > top[:, 0]).all()  # bluish background, not the grey-white wall
    assert (image[-1].astype(int) != top).any()


def test_a_projected_world_point_lands_where_the_renderer_draws_it():
    box = Obstacle('box', 0.6, -0.05, 0.0, 0.1, 0.2, height=0.12, color=RED)
    renderer = Renderer(scene(box))
    camera = renderer.camera
    pose = (0.05, 0.02, -0.1)
    image = renderer.render(pose)
    mask = red(image)
    face_x = box.x - box.length / 2
    for y in np.linspace(-0.12, 0.02, 5):
        for z in (0.01, 0.03, 0.05):
            u, v, depth = camera.project(pose, np.array([face_x - 1e-3, y, z]))
            assert depth > 0
            assert mask[int(round(v)), int(round(u))], (y, z)
    # The bottom edge of the face: obstacle one pixel above, floor one pixel below.
    u, v, _ = camera.project(pose, np.array([face_x, -0.05, 0.0]))
    col, row = int(round(u)), int(round(v))
    assert mask[row - 1, col] and not mask[row + 2, col]
    # A point in front of the face on the floor is floor-coloured.
    u, v, _ = camera.project(pose, np.array([face_x - 0.05, -0.05, 0.0]))
    assert not mask[int(round(v)), int(round(u))]


def test_without_rng_the_image_is_deterministic_and_with_it_noise_has_the_given_std():
    renderer = Renderer(make_world('boxes'), noise=3.0)
    pose = (-0.4, -0.1, 0.4)
    clean = renderer.render(pose)
    assert np.array_equal(clean, renderer.render(pose))
    assert np.array_equal(clean, Renderer(make_world('boxes'), noise=3.0).render(pose))
    noisy = renderer.render(pose, np.random.default_rng(7))
    assert np.array_equal(noisy, renderer.render(pose, np.random.default_rng(7)))
    assert not np.array_equal(noisy, renderer.render(pose, np.random.default_rng(8)))
    unclipped = (clean > 20) & (clean < 235)
    difference = noisy.astype(float)[unclipped] - clean.astype(float)[unclipped]
    assert abs(difference.mean()) < 0.2
    assert difference.std() == pytest.approx(3.0, rel=0.1)
    assert np.array_equal(Renderer(make_world('boxes'), noise=0.0).render(
        pose, np.random.default_rng(7)), clean)


@pytest.mark.parametrize('size', [(160, 120), (320, 240), (640, 480)])
@pytest.mark.parametrize('name', [*WORLD_NAMES, 'random'])
def test_every_world_renders_at_every_resolution(name, size):
    world = make_world(name, seed=5, vary=True)
    renderer = Renderer(world, CameraModel(*size))
    rng = np.random.default_rng(0)
    for _ in range(3):
        pose = (*rng.uniform(-0.6, 0.6, 2), rng.uniform(-math.pi, math.pi))
        image = renderer.render(pose, rng)
        assert image.shape == (size[1], size[0], 3)
        assert image.dtype == np.uint8
        assert image.flags['C_CONTIGUOUS']
        assert len(np.unique(image.reshape(-1, 3)[::7], axis=0)) > 20


def test_inside_an_obstacle_the_camera_sees_its_colour_not_the_world_behind():
    renderer = Renderer(scene(Obstacle('cylinder', 0.3, 0.2, radius=0.1, height=0.2,
                                       color=RED)))
    for yaw in (0.0, 2.0, -2.5):
        # Lens 3 cm from the centre, looking any way: a body pressed into an obstacle sees
        # its inside (and the floor in it), never the world beyond.
        pose = (0.33 - 0.07 * math.cos(yaw), 0.2 - 0.07 * math.sin(yaw), yaw)
        image = renderer.render(pose)
        assert red(image[:120]).all()
        floor = np.abs(image.astype(float) / (np.array(FLOOR) * 255) - 0.8).max(axis=2) < 0.2
        assert (red(image) | floor).all()


# ------------------------------------------------------------------ appearance re-draws
def obstacle_silhouette(renderer: Renderer, world: World, pose) -> np.ndarray:
    """
    Return where obstacle 0 of ``world`` shows in the image, whatever its colour.

    The world is drawn twice with that obstacle red and then blue and everything else as
    it is: the pixels that differ are exactly the obstacle's.
    """
    def painted(color):
        obstacles = (replace(world.obstacles[0], color=color), *world.obstacles[1:])
        renderer.set_world(replace(world, obstacles=obstacles))
        return renderer.render(pose).astype(int)

    return np.abs(painted(RED) - painted(BLUE)).sum(axis=-1) > 0


def test_a_redrawn_world_shows_the_same_shapes_in_other_colours():
    camera = CameraModel(width=160, height=120)
    world = scene(Obstacle('box', 0.5, 0.1, 0.4, 0.2, 0.15, height=0.12, color=RED),
                  Obstacle('cylinder', 0.8, -0.3, radius=0.08, height=0.2, color=BLUE))
    renderer = Renderer(world, camera, noise=0.0)
    pose = (0.0, 0.0, 0.0)
    before = renderer.render(pose)
    silhouette = obstacle_silhouette(renderer, world, pose)
    assert 200 < silhouette.sum() < 0.5 * silhouette.size
    for seed in range(4):
        redrawn = redraw_appearance(world, seed)
        renderer.set_world(redrawn)
        after = renderer.render(pose)
        # Every part of the image changes colour...
        changed = np.abs(after.astype(int) - before.astype(int)).sum(axis=-1) > 6
        assert changed.mean() > 0.8
        assert changed[silhouette].mean() > 0.8
        # ...but the obstacle covers exactly the same pixels.
        np.testing.assert_array_equal(obstacle_silhouette(renderer, redrawn, pose), silhouette)


def test_set_world_renders_exactly_what_a_new_renderer_would():
    camera = CameraModel(width=96, height=72)
    world = make_world('boxes')
    redrawn = redraw_appearance(world, 3)
    renderer = Renderer(world, camera)
    renderer.set_world(redrawn)
    fresh = Renderer(redrawn, camera)
    for pose in [(0.0, -0.3, 0.5), (-0.6, 0.0, 2.0), (0.2, 0.2, -1.0)]:
        np.testing.assert_array_equal(renderer.render(pose), fresh.render(pose))
        rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
        np.testing.assert_array_equal(renderer.render(pose, rng_a), fresh.render(pose, rng_b))
