"""The simulator: kinematics, limits, odometry, collisions, stream rates, determinism."""

import math

import numpy as np
import pytest

from ssl_obstacle.core.geometry import relative_pose, wrap_angle
from ssl_obstacle.core.thymio import SENSOR_NAMES
from ssl_obstacle.sim.geometry2d import footprint_overlaps
from ssl_obstacle.sim.robot import (BODY_OFFSET, BODY_RADIUS, clip_command, DiffDrive,
                                    integrate, MAX_ANGULAR_SPEED)
from ssl_obstacle.sim.simulator import (KIND_ORDER, NS, SimSettings, Simulator,
                                        stream_stamp)
from ssl_obstacle.sim.world import make_world, Obstacle, World

EXACT = SimSettings(odom_noise=0.0, proximity_noise=0.0, ground_truth=False)
OPEN = World('open', size_x=10.0, size_y=10.0)


def drive(sim: Simulator, linear: float, angular: float, seconds: float) -> list:
    """Command a twist, refreshed every 0.1 s as a node would; return the events."""
    events = []
    end = sim.now_ns + int(round(seconds * NS))
    while sim.now_ns < end:
        sim.set_command(linear, angular)
        events += sim.run_until(min(end, sim.now_ns + NS // 10))
    return events


def true_poses(events) -> np.ndarray:
    return np.array([e.pose for e in events if e.kind == 'ground_truth_odom'])


# ------------------------------------------------------------------------ kinematics
def test_straight_motion_advances_v_t():
    sim = Simulator(OPEN, EXACT, start_pose=(0.0, 0.0, 0.0))
    drive(sim, 0.1, 0.0, 5.0)
    np.testing.assert_allclose(sim.true_pose, [0.5, 0.0, 0.0], atol=1e-12)


def test_turning_on_the_spot_advances_yaw_w_t():
    sim = Simulator(OPEN, EXACT, start_pose=(1.0, 2.0, 0.5))
    drive(sim, 0.0, 1.0, 2.0)
    np.testing.assert_allclose(sim.true_pose[:2], [1.0, 2.0], atol=1e-12)
    assert sim.true_pose[2] == pytest.approx(2.5, abs=1e-12)
    drive(sim, 0.0, -1.5, 3.0)
    assert sim.true_pose[2] == pytest.approx(wrap_angle(2.5 - 4.5), abs=1e-12)


def test_an_arc_has_radius_v_over_w():
    sim = Simulator(OPEN, EXACT, start_pose=(0.0, 0.0, 0.0))
    events = drive(sim, 0.1, 0.5, 4.0)
    radius = 0.1 / 0.5
    poses = true_poses(events)
    # Every pose on the circle of radius v/w about (0, r), heading along its tangent.
    np.testing.assert_allclose(np.hypot(poses[:, 0], poses[:, 1] - radius), radius,
                               atol=1e-12)
    angle = 0.5 * 4.0
    np.testing.assert_allclose(sim.true_pose, [radius * math.sin(angle),
                                               radius * (1 - math.cos(angle)), angle],
                               atol=1e-12)


def test_speed_limits_clip_wheels_and_keep_the_curvature():
    assert clip_command(1.0, 0.0) == pytest.approx((0.14, 0.0))
    assert clip_command(0.0, 10.0) == pytest.approx((0.0, MAX_ANGULAR_SPEED))
    assert pytest.approx(2 * 0.14 / 0.0935) == MAX_ANGULAR_SPEED
    linear, angular = clip_command(0.14, 3.0)
    assert angular / linear == pytest.approx(3.0 / 0.14)
    left, right = linear - angular * 0.0935 / 2, linear + angular * 0.0935 / 2
    assert max(abs(left), abs(right)) == pytest.approx(0.14)
    assert clip_command(-0.05, -0.5) == (-0.05, -0.5)  # within limits: untouched
    assert clip_command(math.nan, 1.0) == (0.0, 0.0)

    sim = Simulator(OPEN, EXACT, start_pose=(0.0, 0.0, 0.0))
    events = drive(sim, 1.0, 0.0, 1.0)
    assert sim.true_pose[0] == pytest.approx(0.14, abs=1e-12)
    twists = np.array([e.twist for e in events if e.kind == 'ground_truth_odom'])
    np.testing.assert_allclose(twists, [[0.14, 0.0]] * len(twists), atol=1e-15)


def test_cmd_timeout_stops_the_robot():
    sim = Simulator(OPEN, EXACT, start_pose=(0.0, 0.0, 0.0))
    sim.set_command(0.1, 0.0)
    events = sim.run_until(sim.now_ns + 3 * NS)
    assert sim.true_pose[0] == pytest.approx(0.1 * 0.5, abs=1e-12)
    assert sim.command == (0.0, 0.0)
    odom = [e for e in events if e.kind == 'odom']
    assert odom[-1].twist == (0.0, 0.0)
    assert odom[0].twist == pytest.approx((0.1, 0.0))


# -------------------------------------------------------------------------- odometry
def random_drive(sim: Simulator, seconds: float, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    events = []
    for _ in range(int(seconds)):
        events += drive(sim, rng.uniform(-0.1, 0.14), rng.uniform(-2.0, 2.0), 1.0)
    return events


def paired_poses(events) -> tuple[np.ndarray, np.ndarray]:
    odom = [e for e in events if e.kind == 'odom']
    truth = [e for e in events if e.kind == 'ground_truth_odom']
    assert [e.stamp for e in odom] == [e.stamp for e in truth]
    return np.array([e.pose for e in odom]), np.array([e.pose for e in truth])


def test_noise_free_odometry_equals_the_truth_relative_to_the_start():
    start = np.array([0.7, -1.2, 2.5])
    sim = Simulator(OPEN, EXACT, start_pose=start)
    odom, truth = paired_poses(random_drive(sim, 120.0))
    assert odom[0].tolist() == [0.0, 0.0, 0.0]
    expected = relative_pose(start, truth)
    np.testing.assert_allclose(odom[:, :2], expected[:, :2], atol=1e-9)
    assert np.abs(wrap_angle(odom[:, 2] - expected[:, 2])).max() < 1e-9
    # It did go places.
    assert np.ptp(truth[:, 0]) > 0.3 and np.ptp(truth[:, 2]) > 3.0
    np.testing.assert_allclose(sim.odom_pose, sim.true_pose_in_odom, atol=1e-9)


def test_noisy_odometry_drifts_but_stays_plausible():
    start = np.array([0.0, 0.0, 0.0])
    sim = Simulator(OPEN, SimSettings(odom_noise=0.02, ground_truth=False), seed=3,
                    start_pose=start)
    odom, truth = paired_poses(random_drive(sim, 120.0))
    error = np.hypot(*(odom[:, :2] - truth[:, :2]).T)
    yaw_error = np.abs(wrap_angle(odom[:, 2] - truth[:, 2]))
    travelled = np.hypot(*np.diff(truth[:, :2], axis=0).T).sum()
    assert error[-1] > 1e-3 and yaw_error.max() > 1e-2  # it drifts...
    assert error.max() < 0.1 * travelled and yaw_error.max() < 1.0  # ...plausibly
    # Over the labeler's horizon (30 cm, a few seconds) the relative error stays small.
    for i in range(0, len(odom) - 60, 20):
        seen = relative_pose(odom[i], odom[i + 60])
        actual = relative_pose(truth[i], truth[i + 60])
        assert np.hypot(*(seen[:2] - actual[:2])) < 0.01
    # Measured twists are noisy but near the true ones.
    odom_twists = np.array([e.twist for e in odom_events(sim, 2.0)])
    assert np.all(np.abs(odom_twists[:, 0] - 0.1) < 0.02)


def odom_events(sim: Simulator, seconds: float) -> list:
    return [e for e in drive(sim, 0.1, 0.0, seconds) if e.kind == 'odom']


# ------------------------------------------------------------------------ collisions
def test_driving_into_a_wall_stops_at_contact_and_counts_one_collision():
    world = World('box', size_x=1.0, size_y=1.0)
    sim = Simulator(world, EXACT, start_pose=(0.0, 0.0, 0.0))
    events = drive(sim, 0.1, 0.0, 10.0)
    front = sim.true_pose[0] + BODY_OFFSET + BODY_RADIUS
    assert 0.5 - 0.0011 < front < 0.5  # stopped within one physics step of the wall
    assert sim.collisions == 1
    assert sim.robot.blocked_steps > 100
    centres = true_poses(events)[:, :2] + [BODY_OFFSET, 0.0]
    assert not footprint_overlaps(world, centres, BODY_RADIUS).any()
    # Stalled wheels: odometry does not move either.
    assert sim.odom_pose[0] == pytest.approx(sim.true_pose[0], abs=1e-12)
    drive(sim, -0.1, 0.0, 1.0)
    drive(sim, 0.1, 0.0, 2.0)
    assert sim.collisions == 2


@pytest.mark.parametrize('seed', range(3))
def test_the_body_never_overlaps_obstacles_whatever_the_commands(seed):
    world = make_world('pillars')
    sim = Simulator(world, EXACT, seed=seed)
    events = random_drive(sim, 60.0, seed)
    poses = true_poses(events)
    centres = poses[:, :2] + BODY_OFFSET * np.column_stack((np.cos(poses[:, 2]),
                                                            np.sin(poses[:, 2])))
    assert not footprint_overlaps(world, centres, BODY_RADIUS).any()
    assert sim.collisions > 0  # random driving in a cluttered arena does hit things


def test_a_long_step_cannot_tunnel_through_a_thin_wall():
    wall = Obstacle('wall', 0.3, 0.0, 0.0, length=0.02, width=1.0)
    robot = DiffDrive(World('thin', obstacles=(wall,)))
    pose = robot.step(np.zeros(3), 0.14, 0.0, 5.0)  # would end 0.7 m ahead
    assert pose[0] + BODY_OFFSET + BODY_RADIUS < 0.29
    assert robot.collisions == 1


def test_integrate_is_exact_for_tiny_and_large_turn_rates():
    for angular in (0.0, 1e-9, 1e-4, 0.5, 3.0):
        pose = np.array([0.1, 0.2, 0.3])
        whole = integrate(pose, 0.1, angular, 1.0)
        halves = integrate(integrate(pose, 0.1, angular, 0.5), 0.1, angular, 0.5)
        np.testing.assert_allclose(whole, halves, atol=1e-15)


def test_overlapping_start_poses_are_rejected_and_random_ones_are_free():
    world = make_world('boxes')
    with pytest.raises(ValueError, match='overlaps'):
        Simulator(world, EXACT, start_pose=(0.0, 0.0, 0.0))  # the central cylinder
    starts = set()
    for seed in range(10):
        sim = Simulator(world, EXACT, seed=seed)
        assert not sim.robot.overlaps(sim.true_pose)
        starts.add(tuple(sim.start_pose))
    assert len(starts) == 10


# ---------------------------------------------------------------------- rates, stamps
def test_every_stream_has_exact_periodic_stamps_and_counts():
    settings = SimSettings(start_ns=5 * NS)
    sim = Simulator(make_world('boxes'), settings, seed=1)
    events = []
    while sim.now_ns < settings.start_ns + 10 * NS:
        step_events = sim.step()
        assert all(e.stamp < sim.now_ns for e in step_events)
        events += step_events
    # Within and across steps, events come in stamp order, simultaneous ones by kind.
    keys = [(e.stamp, KIND_ORDER.index(e.kind)) for e in events]
    assert keys == sorted(keys)

    def stamps(kind):
        return [e.stamp for e in events if e.kind == kind]

    start = settings.start_ns
    assert stamps('odom') == [start + n * 50_000_000 for n in range(200)]
    assert stamps('ground_truth_odom') == stamps('odom')
    # 15 Hz: 66666666.67 ns, each stamp rounded on its own (no drift).
    assert stamps('image') == [start + round(n * 1e9 / 15) for n in range(150)]
    assert stamps('image')[3] - start == 200_000_000
    assert stamps('ground_truth_labels') == stamps('image')
    ranges = [e for e in events if e.kind == 'range']
    assert [e.stamp for e in ranges] == [start + n * 100_000_000
                                         for n in range(100) for _ in range(5)]
    assert [e.sensor for e in ranges] == list(SENSOR_NAMES) * 100
    assert all(e.value == -1.0 or 0.0215 <= e.value <= 0.14 for e in ranges)
    labels = [e for e in events if e.kind == 'ground_truth_labels']
    assert all(e.labels.shape == (5, 31) and e.labels.dtype == np.float32 for e in labels)
    images = [e for e in events if e.kind == 'image']
    assert all(e.image is None for e in images)
    assert [e.pose for e in images] == [e.pose for e in labels]


def test_poses_inside_a_tick_are_exact_not_rounded_to_the_tick():
    sim = Simulator(OPEN, EXACT, start_pose=(0.0, 0.0, 0.0))
    events = drive(sim, 0.1, 0.0, 1.0)
    for event in events:
        if event.kind in ('ground_truth_odom', 'image'):
            elapsed = (event.stamp - EXACT.start_ns) / NS
            assert event.pose[0] == pytest.approx(0.1 * elapsed, abs=1e-12)


def test_ground_truth_can_be_switched_off_and_rates_changed():
    settings = SimSettings(ground_truth=False, camera_rate=30.0, proximity_rate=5.0,
                           odom_rate=50.0, physics_rate=200.0)
    sim = Simulator(make_world('walls'), settings, seed=2)
    events = sim.run_until(settings.start_ns + 2 * NS)
    kinds = [e.kind for e in events]
    assert kinds.count('ground_truth_labels') == 0
    assert kinds.count('image') == 60
    assert kinds.count('range') == 10 * 5
    assert kinds.count('odom') == 100
    assert stream_stamp(0, 30.0, 60) == 2 * NS
    assert stream_stamp(0, 29.97, 2997) == 100 * NS
    assert stream_stamp(7, 10.0, 3) == 300_000_007


# ----------------------------------------------------------------------- determinism
class FakeRenderer:
    """A deterministic stand-in for the camera: pixels from the pose and the rng."""

    def render(self, pose, rng):
        image = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        image[0, 0] = np.uint8(int(abs(pose[0]) * 1000) % 256)
        return image


def run_stream(seed: int, **settings) -> list:
    sim = Simulator(make_world('random', seed=7), SimSettings(**settings), seed=seed,
                    renderer=FakeRenderer())
    return random_drive(sim, 20.0, seed=1)


def event_key(event) -> tuple:
    return (event.stamp, event.kind, event.pose, event.twist, event.sensor, event.value,
            None if event.image is None else event.image.tobytes(),
            None if event.labels is None else event.labels.tobytes())


def test_same_seed_same_stream_different_seed_different_stream():
    first = [event_key(e) for e in run_stream(4)]
    again = [event_key(e) for e in run_stream(4)]
    other = [event_key(e) for e in run_stream(5)]
    assert first == again
    assert len(first) == len(other) and first != other
    images = [key[6] for key in first if key[1] == 'image']
    assert len(images) == 300 and len(set(images)) == 300


def test_noise_streams_are_independent_of_other_rates():
    def range_values(**settings):
        return [e.value for e in run_stream(4, **settings) if e.kind == 'range']

    def odom_poses(**settings):
        return [e.pose for e in run_stream(4, **settings) if e.kind == 'odom']

    assert range_values() == range_values(camera_rate=30.0, odom_rate=50.0)
    assert odom_poses() == odom_poses(odom_rate=40.0)[::2]


# ------------------------------------------------------------------ appearance re-draws
def test_appearance_period_redraws_the_look_but_no_other_stream():
    from ssl_obstacle.sim.camera import CameraModel, Renderer
    from ssl_obstacle.sim.world import same_geometry

    def run(period: float) -> tuple[Simulator, list]:
        world = make_world('boxes')
        sim = Simulator(world, SimSettings(appearance_period=period), seed=3,
                        renderer=Renderer(world, CameraModel(width=64, height=48)))
        return sim, random_drive(sim, 5.0, seed=2)

    plain_sim, plain = run(0.0)
    varied_sim, varied = run(1.5)
    assert plain_sim.appearance_changes == 0
    assert varied_sim.appearance_changes == 3  # at 1.5, 3.0 and 4.5 s
    assert same_geometry(varied_sim.world, plain_sim.world)
    assert varied_sim.world != plain_sim.world
    assert varied_sim.renderer.world is varied_sim.world
    assert len(plain) == len(varied)
    first_redraw = plain_sim.settings.start_ns + int(1.5 * NS)
    images = 0
    for a, b in zip(plain, varied):
        assert (a.stamp, a.kind, a.pose, a.twist, a.sensor, a.value) == \
            (b.stamp, b.kind, b.pose, b.twist, b.sensor, b.value)
        if a.kind == 'ground_truth_labels':
            np.testing.assert_array_equal(a.labels, b.labels)
        if a.kind == 'image':
            images += 1
            same = np.array_equal(a.image, b.image)
            # Pixel noise is the same too, so frames match exactly until the first re-draw.
            assert same == (a.stamp < first_redraw), a.stamp
    assert images == 75


def test_appearance_period_must_be_non_negative():
    with pytest.raises(ValueError, match='appearance_period'):
        SimSettings(appearance_period=-1.0)
    with pytest.raises(ValueError, match='appearance_period'):
        SimSettings(appearance_period=math.nan)


def test_a_renderer_without_set_world_keeps_drawing_and_the_streams_go_on():
    sim = Simulator(make_world('boxes'), SimSettings(appearance_period=0.5), seed=1,
                    renderer=FakeRenderer())
    events = random_drive(sim, 2.0, seed=0)
    assert sim.appearance_changes == 3
    assert sum(e.kind == 'image' for e in events) == 30
