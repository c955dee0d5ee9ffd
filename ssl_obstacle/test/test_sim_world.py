"""World geometry: ray casting, footprints, IR sensors and ground-truth label grids."""

from dataclasses import replace
import math

import numpy as np
import pytest

from ssl_obstacle.core.geometry import compose
from ssl_obstacle.core.params import DEFAULT_DISTANCES
from ssl_obstacle.core.thymio import PROXIMITY_POSES, SENSOR_NAMES
from ssl_obstacle.sim.geometry2d import distance_to_obstacles, footprint_overlaps, ray_cast
from ssl_obstacle.sim.ground_truth import label_grid
from ssl_obstacle.sim.proximity import ideal_readings, ProximitySensors
from ssl_obstacle.sim.robot import BODY_OFFSET, BODY_RADIUS
from ssl_obstacle.sim.world import (make_world, Obstacle, redraw_appearance, same_geometry,
                                    TEXTURES, World, WORLD_NAMES)

# A 2 × 3 m arena with one box (faces at x = 0.4 and 0.6, y = ±0.2) and one cylinder of
# radius 0.1 at (0, -0.5).
BOX = Obstacle('box', 0.5, 0.0, 0.0, length=0.2, width=0.4, height=0.1)
CYLINDER = Obstacle('cylinder', 0.0, -0.5, radius=0.1, height=0.1)
SCENE = World('scene', size_x=2.0, size_y=3.0, obstacles=(BOX, CYLINDER))


def cast(world, origin, angle, **kwargs):
    """Cast one ray, return its distance as a float."""
    return float(ray_cast(world, np.array([origin]), np.array([angle]), **kwargs)[0])


# --------------------------------------------------------------------------- ray_cast
@pytest.mark.parametrize('origin, angle, expected', [
    ((0.0, 0.0), 0.0, 0.4),                    # box face straight ahead
    ((0.0, 0.15), 0.0, 0.4),                   # same face, off-centre
    ((0.0, 0.0), math.pi, 1.0),                # arena wall behind
    ((0.0, 0.0), math.pi / 2, 1.5),            # arena wall at y = 1.5
    ((0.0, 0.0), math.pi / 4, math.sqrt(2)),   # diagonal, misses the box, hits x = 1
    ((0.0, 0.0), -math.pi / 2, 0.4),           # cylinder's near side
    ((0.05, 0.0), -math.pi / 2, 0.5 - math.sqrt(0.1 ** 2 - 0.05 ** 2)),  # off-axis chord
    ((0.7, 0.0), math.pi, 0.1),                # box from behind: its far face at x = 0.6
    ((-0.5, 0.2), 0.0, 0.9),                   # along the box's top face: grazes its corner
])
def test_ray_cast_hits_hand_placed_primitives_at_known_distances(origin, angle, expected):
    assert cast(SCENE, origin, angle) == pytest.approx(expected, abs=1e-12)


def test_ray_cast_on_a_rotated_box():
    # A 0.2 m square turned by 45 degrees at (0.5, 0): the corner towards the origin is at
    # x = 0.5 - 0.1 * sqrt(2); the lower-left face is the line x - y = 0.5 - 0.1 * sqrt(2).
    world = World('diamond', obstacles=(Obstacle('box', 0.5, 0.0, math.pi / 4, 0.2, 0.2),))
    corner = 0.5 - 0.1 * math.sqrt(2)
    assert cast(world, (0.0, 0.01), 0.0) == pytest.approx(corner + 0.01, abs=1e-12)
    assert cast(world, (0.0, -0.01), 0.0) == pytest.approx(corner + 0.01, abs=1e-12)


def test_ray_cast_max_range_and_inside_or_on_obstacles():
    assert cast(SCENE, (0.0, 0.0), 0.0, max_range=0.39) == math.inf
    assert cast(SCENE, (0.0, 0.0), 0.0, max_range=0.41) == pytest.approx(0.4)
    # Inside the cylinder, inside the box, on the box's face pointing away: 0, never the
    # far side of the obstacle.
    assert cast(SCENE, (0.0, -0.55), 0.0) == 0.0
    assert cast(SCENE, (0.5, 0.1), math.pi / 2) == 0.0
    assert cast(SCENE, (0.4, 0.0), math.pi) == 0.0
    # Outside the arena, looking away from it: nothing.
    assert cast(SCENE, (3.0, 0.0), 0.0) == math.inf


def test_ray_cast_counts_only_primitives_taller_than_min_height():
    low_box = Obstacle('box', 0.5, 0.0, 0.0, 0.2, 0.4, height=0.02)
    low_cylinder = Obstacle('cylinder', 0.0, -0.5, radius=0.1, height=0.03)
    world = World('low', size_x=2.0, size_y=3.0, obstacles=(low_box, low_cylinder))
    assert cast(world, (0.0, 0.0), 0.0) == pytest.approx(0.4)
    assert cast(world, (0.0, 0.0), 0.0, min_height=0.03) == pytest.approx(1.0)
    # Height must exceed min_height: exactly 0.03 is not seen from 0.03.
    assert cast(world, (0.0, 0.0), -math.pi / 2, min_height=0.029) == pytest.approx(0.4)
    assert cast(world, (0.0, 0.0), -math.pi / 2, min_height=0.03) == pytest.approx(1.5)
    # Inside a low box does not count as inside an obstacle for a sensor above it.
    assert cast(world, (0.5, 0.0), 0.0, min_height=0.03) == pytest.approx(0.5)
    # Arena walls are 0.2 m tall: taller sensors see over everything.
    assert cast(world, (0.0, 0.0), 0.0, min_height=0.5) == math.inf


def test_ray_cast_is_vectorised_and_matches_single_rays():
    rng = np.random.default_rng(3)
    origins = rng.uniform(-0.9, 0.9, (200, 2))
    angles = rng.uniform(-math.pi, math.pi, 200)
    together = ray_cast(SCENE, origins, angles, max_range=0.5)
    one_by_one = [cast(SCENE, o, a, max_range=0.5) for o, a in zip(origins, angles)]
    np.testing.assert_array_equal(together, one_by_one)
    assert ray_cast(SCENE, np.zeros((0, 2)), np.zeros(0)).shape == (0,)


def test_ray_cast_in_a_thin_wall_world_never_passes_through_the_wall():
    world = make_world('walls')
    wall = world.obstacles[0]  # 0.9 x 0.02 m at (-0.4, 0.3), along x
    origins = np.column_stack((np.linspace(-0.8, 0.0, 50), np.full(50, 0.1)))
    hits = ray_cast(world, origins, np.full(50, math.pi / 2))
    np.testing.assert_allclose(hits, 0.3 - wall.width / 2 - 0.1, atol=1e-12)


# ------------------------------------------------------------------------- footprints
@pytest.mark.parametrize('position, radius, overlaps', [
    ((0.33, 0.0), 0.06, False),   # 7 cm from the box face
    ((0.35, 0.0), 0.06, True),    # 5 cm from it
    ((0.5, 0.0), 0.01, True),     # entirely inside the box
    ((0.0, -0.33), 0.06, False),  # 7 cm from the cylinder
    ((0.0, -0.35), 0.06, True),
    ((0.0, -0.5), 0.01, True),    # inside the cylinder
    ((0.9, 1.0), 0.06, False),    # 4 cm from the arena wall at x = 1
    ((0.95, 1.0), 0.06, True),
    ((3.0, 0.0), 0.06, True),     # outside the arena
    # Near the box's corner (0.4, 0.2): diagonal distance decides.
    ((0.4 - 0.05, 0.2 + 0.05), 0.07, False),
    ((0.4 - 0.04, 0.2 + 0.04), 0.06, True),
])
def test_footprint_overlaps_by_hand(position, radius, overlaps):
    assert bool(footprint_overlaps(SCENE, np.array([position]), radius)[0]) is overlaps


def test_distance_to_obstacles_by_hand():
    points = np.array([[0.0, 0.0], [0.2, 0.5], [0.5, 0.0], [0.7, 0.2]])
    # Box face; box corner (0.4, 0.2); inside the box; box corner (0.6, 0.2).
    np.testing.assert_allclose(distance_to_obstacles(SCENE, points),
                               [0.4, math.hypot(0.2, 0.3), 0.0, 0.1], atol=1e-12)


# ------------------------------------------------------------------------ IR sensors
def wall_world(distance: float, height: float = 0.1) -> World:
    """Return a 2 m arena whose only obstacle is a long wall with its face at x = distance."""
    wall = Obstacle('wall', distance + 0.01, 0.0, 0.0, length=0.02, width=1.6, height=height)
    return World('wall', obstacles=(wall,))


def expected_wall_range(distance: float, sensor: str, half_angle: float = 0.15) -> float:
    """Nearest hit over a sensor's three rays on a wall facing the robot at the origin."""
    x, _, yaw = PROXIMITY_POSES[sensor]
    return min((distance - x) / math.cos(yaw + offset)
               for offset in (-half_angle, 0.0, half_angle))


@pytest.mark.parametrize('distance', [0.12, 0.15, 0.18])
def test_each_sensor_reads_a_wall_at_its_geometric_range_without_noise(distance):
    world = wall_world(distance)
    readings = ideal_readings(world, np.zeros(3))
    for name, value in zip(SENSOR_NAMES, readings):
        expected = expected_wall_range(distance, name)
        if expected <= 0.14:
            assert value == pytest.approx(expected, abs=1e-12), name
        else:
            assert value == -1.0, name
    sensors = ProximitySensors(world, noise=0.0)
    np.testing.assert_array_equal(sensors.read(np.zeros(3)), readings)


def test_sensor_ranges_by_hand_for_a_wall_at_15_cm():
    # center: 0.15 - 0.08; center_left: the ray at 0.33161 - 0.15 rad is the shortest.
    readings = dict(zip(SENSOR_NAMES, ideal_readings(wall_world(0.15), np.zeros(3))))
    assert readings['center'] == pytest.approx(0.07, abs=1e-12)
    assert readings['center_left'] == pytest.approx((0.15 - 0.0756) / math.cos(0.18161))
    assert readings['center_right'] == pytest.approx(readings['center_left'])
    assert readings['left'] == pytest.approx((0.15 - 0.063) / math.cos(0.51323))
    assert readings['right'] == pytest.approx(readings['left'])


def test_sensor_noise_is_gaussian_around_the_true_range():
    world = wall_world(0.15)
    sensors = ProximitySensors(world, noise=0.003, rng=np.random.default_rng(0))
    samples = np.array([sensors.read(np.zeros(3)) for _ in range(400)])
    for column, name in enumerate(SENSOR_NAMES):
        expected = expected_wall_range(0.15, name)
        assert np.all(np.abs(samples[:, column] - expected) < 5 * 0.003), name
        assert samples[:, column].mean() == pytest.approx(expected, abs=0.001), name
        assert samples[:, column].std() == pytest.approx(0.003, rel=0.2), name


def test_nothing_within_range_reads_exactly_minus_one_even_with_noise():
    sensors = ProximitySensors(wall_world(0.4), noise=0.003, rng=np.random.default_rng(1))
    for _ in range(50):
        assert sensors.read(np.zeros(3)).tolist() == [-1.0] * 5
    empty = World('empty', size_x=4.0, size_y=4.0)
    assert ideal_readings(empty, np.zeros(3)).tolist() == [-1.0] * 5


def test_readings_below_the_minimum_range_clamp_to_it():
    # The center sensor is 1.5 cm from the wall; center_left and center_right 2 cm.
    readings = dict(zip(SENSOR_NAMES, ideal_readings(wall_world(0.095), np.zeros(3))))
    assert readings['center'] == 0.0215
    assert readings['center_left'] == 0.0215
    assert readings['left'] == pytest.approx((0.095 - 0.063) / math.cos(0.51323))


def test_sensors_do_not_see_obstacles_below_their_height():
    assert ideal_readings(wall_world(0.12, height=0.02), np.zeros(3)).tolist() == [-1.0] * 5
    assert ideal_readings(wall_world(0.12, height=0.05), np.zeros(3))[2] == pytest.approx(0.04)


def test_sensors_follow_the_robot_pose():
    # The wall scene rotated and shifted with the robot reads the same.
    pose = np.array([0.2, -0.1, 0.7])
    centre = compose(pose, np.array([0.16, 0.0, 0.0]))
    wall = Obstacle('wall', centre[0], centre[1], 0.7, length=0.02, width=1.0)
    moved = ideal_readings(World('moved', obstacles=(wall,)), pose)
    np.testing.assert_allclose(moved, ideal_readings(wall_world(0.15), np.zeros(3)),
                               atol=1e-12)


def test_unknown_sensor_names_are_rejected():
    with pytest.raises(ValueError, match='unknown proximity sensors'):
        ProximitySensors(SCENE, sensor_names=('left', 'rear_left'))


# ---------------------------------------------------------------------- ground truth
# A wall face at x = 0.357 ahead of a robot at the origin facing it. By hand, a cell (s, d)
# is 1 when the robot moved d ahead reads within 0.14 m, or its body touches the wall:
# - center: 0.357 - 0.08 - d <= 0.14                         -> d >= 0.137 -> 0.14 ... 0.30
# - center_left/right (best ray at 0.33161 - 0.15 rad):
#   (0.357 - 0.0756 - d) / cos(0.18161) <= 0.14             -> d >= 0.1437 -> 0.15 ...
# - left/right (best ray at 0.66323 - 0.15 rad):
#   (0.357 - 0.063 - d) / cos(0.51323) <= 0.14              -> d >= 0.1720 -> 0.18 ...
# - body: disc of radius 0.06 centred 0.03 ahead: d + 0.09 >= 0.357  -> d >= 0.267 -> 0.27 ...
GRID_WALL = 0.357


def first_one(row: np.ndarray) -> float:
    """Return the first distance of a row that is 1 (all later ones must be 1 too)."""
    index = int(np.argmax(row))
    assert row[index] == 1.0 and np.all(row[index:] == 1.0) and np.all(row[:index] == 0.0)
    return DEFAULT_DISTANCES[index]


def test_ground_truth_grid_facing_a_wall_by_hand():
    grid = label_grid(wall_world(GRID_WALL), (0.0, 0.0, 0.0))
    assert grid.dtype == np.float32 and grid.shape == (5, 31)
    firsts = dict(zip(SENSOR_NAMES, (first_one(row) for row in grid)))
    assert firsts == {'left': 0.18, 'center_left': 0.15, 'center': 0.14,
                      'center_right': 0.15, 'right': 0.18}
    # The same thresholds from the formulas (guards the hand arithmetic above).
    assert pytest.approx(0.137) == GRID_WALL - 0.08 - 0.14
    assert GRID_WALL - 0.0756 - 0.14 * math.cos(0.18161) == pytest.approx(0.1437, abs=1e-4)
    assert GRID_WALL - 0.063 - 0.14 * math.cos(0.51323) == pytest.approx(0.1720, abs=1e-4)
    assert pytest.approx(0.267) == GRID_WALL - BODY_OFFSET - BODY_RADIUS


def test_ground_truth_body_overlap_makes_whole_columns_ones():
    # A wall too low for the sensors: only the body can find it, from d = 0.27 on.
    grid = label_grid(wall_world(GRID_WALL, height=0.02), (0.0, 0.0, 0.0))
    ones = [d for d, column in zip(DEFAULT_DISTANCES, grid.T) if column.all()]
    assert ones == [0.27, 0.28, 0.29, 0.3]
    assert not grid[:, :27].any()


def body_hits_on_the_way(world: World, pose: np.ndarray, distance: float) -> bool:
    """Whether the body overlaps anything at some point of the straight path to distance."""
    for d in np.arange(0.0, distance + 1e-9, 0.001):
        ahead = compose(pose, np.array([d, 0.0, 0.0]))
        centre = ahead[:2] + BODY_OFFSET * np.array([math.cos(ahead[2]), math.sin(ahead[2])])
        if footprint_overlaps(world, centre[None], BODY_RADIUS)[0]:
            return True
    return False


def test_ground_truth_behind_a_thin_wall_is_obstacle_not_free():
    # A wall too low for the sensors, face at 0.105 m, 2 cm thick: the body (radius 0.06,
    # 0.03 ahead) overlaps it from d = 0.015 to d = 0.155; from 0.16 on it would stand
    # behind the wall with nothing in sight. Driving ahead it never gets there: the wall
    # stops it, so those cells are 1 too.
    world = wall_world(0.105, height=0.02)
    behind = compose(np.zeros(3), np.array([0.2, 0.0, 0.0]))
    centre = behind[:2] + np.array([BODY_OFFSET, 0.0])
    assert not footprint_overlaps(world, centre[None], BODY_RADIUS)[0]
    assert not (ideal_readings(world, behind) > 0).any()
    grid = label_grid(world, (0.0, 0.0, 0.0))
    assert grid[:, DEFAULT_DISTANCES.index(0.02):].all()
    assert not grid[:, :DEFAULT_DISTANCES.index(0.02)].any()


def test_ground_truth_path_is_checked_between_sparse_distances():
    # Only 0 and 0.25 m are asked for; the wall lies between them and must still count.
    grid = label_grid(wall_world(0.10, height=0.02), (0.0, 0.0, 0.0), distances=(0.0, 0.25))
    np.testing.assert_array_equal(grid, np.repeat([[0.0, 1.0]], len(SENSOR_NAMES), axis=0))


def test_ground_truth_is_the_same_for_the_scene_moved_with_the_robot():
    pose = np.array([0.3, -0.2, -2.0])
    centre = compose(pose, np.array([GRID_WALL + 0.01, 0.0, 0.0]))
    wall = Obstacle('wall', centre[0], centre[1], -2.0, length=0.02, width=1.0)
    moved = label_grid(World('moved', size_x=3.0, size_y=3.0, obstacles=(wall,)), pose)
    np.testing.assert_array_equal(moved, label_grid(wall_world(GRID_WALL), (0.0, 0.0, 0.0)))


def test_ground_truth_custom_sensors_and_distances():
    grid = label_grid(wall_world(GRID_WALL), (0.0, 0.0, 0.0), ('center', 'left'),
                      (0.0, 0.14, 0.2, 0.27))
    np.testing.assert_array_equal(grid, [[0, 1, 1, 1], [0, 0, 1, 1]])


def test_ground_truth_agrees_with_ideal_readings_at_every_distance():
    world = make_world('boxes')
    rng = np.random.default_rng(5)
    for _ in range(20):
        pose = np.array([*rng.uniform(-0.8, 0.8, 2), rng.uniform(-math.pi, math.pi)])
        grid = label_grid(world, pose)
        for column, d in enumerate(DEFAULT_DISTANCES):
            ahead = compose(pose, np.array([d, 0.0, 0.0]))
            if body_hits_on_the_way(world, pose, d):
                assert grid[:, column].all()
            else:
                expected = ideal_readings(world, ahead) > 0
                np.testing.assert_array_equal(grid[:, column], expected)


@pytest.mark.parametrize('name', [*WORLD_NAMES, 'random'])
def test_every_world_has_free_room_and_a_closed_arena(name):
    world = make_world(name, seed=4)
    rng = np.random.default_rng(0)
    origins = rng.uniform(-0.5, 0.5, (100, 2))
    hits = ray_cast(world, origins, rng.uniform(-math.pi, math.pi, 100))
    # Every ray ends on something within the arena's diagonal.
    assert np.all(hits <= math.hypot(world.size_x, world.size_y))
    free = ~footprint_overlaps(world, origins, BODY_RADIUS)
    assert free.mean() > 0.4


# ------------------------------------------------------------------ appearance re-draws
@pytest.mark.parametrize('name', [*WORLD_NAMES, 'random'])
def test_redrawn_appearance_keeps_geometry_and_ground_truth_exactly(name):
    world = make_world(name, seed=3)
    redrawn = redraw_appearance(world, 12)
    assert same_geometry(world, redrawn)
    for field in ('segments', 'segment_height', 'segment_owner', 'circles', 'circle_height',
                  'circle_owner'):
        np.testing.assert_array_equal(getattr(world.primitives(), field),
                                      getattr(redrawn.primitives(), field))
    rng = np.random.default_rng(1)
    poses = np.column_stack((rng.uniform(-0.7, 0.7, (40, 2)), rng.uniform(-3, 3, 40)))
    for pose in poses:
        np.testing.assert_array_equal(label_grid(world, pose), label_grid(redrawn, pose))
    hits = ray_cast(world, poses[:, :2], poses[:, 2])
    np.testing.assert_array_equal(hits, ray_cast(redrawn, poses[:, :2], poses[:, 2]))


def test_redrawn_appearance_changes_every_colour_and_the_light_reproducibly():
    world = make_world('boxes')
    first, again, other = (redraw_appearance(world, seed) for seed in (5, 5, 6))
    assert first == again  # a seed gives one look
    assert first != other
    for redrawn in (first, other):
        assert all(a.color != b.color for a, b in zip(world.obstacles, redrawn.obstacles))
        assert redrawn.floor_color != world.floor_color
        assert redrawn.wall_color != world.wall_color
        assert redrawn.lighting != world.lighting
        assert redrawn.texture_seed != world.texture_seed
    # Successive draws from one generator differ: a run sees a new look every period.
    rng = np.random.default_rng(0)
    looks = [redraw_appearance(world, rng) for _ in range(5)]
    assert len({look.floor_color for look in looks}) == 5
    # Textures come from the renderer's set, so every look can be drawn.
    textures = {o.texture for look in looks for o in look.obstacles}
    assert textures <= set(TEXTURES) and len(textures) > 1


def test_same_geometry_notices_a_moved_or_resized_obstacle():
    world = make_world('boxes')
    moved = World(world.name, obstacles=(replace(world.obstacles[0], x=0.5),
                                         *world.obstacles[1:]))
    taller = World(world.name, obstacles=(replace(world.obstacles[0], height=0.3),
                                          *world.obstacles[1:]))
    assert same_geometry(world, replace(world, floor_color=(0.1, 0.2, 0.3)))
    assert not same_geometry(world, moved)
    assert not same_geometry(world, taller)
    assert not same_geometry(world, replace(world, obstacles=world.obstacles[1:]))
