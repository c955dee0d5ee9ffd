"""
``ssl-obstacle up``: the launch files' setups, for people without ``ros2 launch``.

Each setup starts the same nodes with the same parameter files and the same overrides as its
launch file in launch/ (test_launch_files.py checks that they agree), so a robot brought up
either way runs one configuration. Every setup loads config/labeler.yaml (the label rule,
shared with ``ssl-obstacle export``) first and its own file, which refines it, second.

Each setup but replay has one controller slot, filled by the explorer, the avoider or
nothing (``controller``), so two nodes never publish ``cmd_vel`` at once. The old
``explorer`` yes/no still works: yes = the explorer, no = no controller.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import os
import pathlib
import sys
from typing import Any, Mapping, Sequence

#: The label rule every setup loads first (``export --params`` reads the same file).
BASE_CONFIG = 'labeler.yaml'

#: The place of the controller among a setup's optional nodes; its "default" there is the
#: name of the controller the setup starts unless told otherwise.
CONTROLLER = 'controller'
#: The nodes that can fill the slot (each publishes cmd_vel), and 'none'.
CONTROLLERS = ('explorer', 'avoider')
CONTROLLER_CHOICES = (*CONTROLLERS, 'none')


@dataclass(frozen=True)
class Setup:
    """One way to bring the system up: which nodes, which parameter file, whose clock."""

    name: str
    config: str
    launch_file: str
    always: tuple[str, ...]
    #: node → started unless the user says otherwise; (CONTROLLER, 'explorer'|'none') is
    #: the controller slot and its default
    optional: tuple[tuple[str, bool | str], ...]
    #: every node follows /clock (bag replay, simulation) ...
    sim_time: bool
    #: ... except these, which make the time
    clock_sources: tuple[str, ...] = ()
    summary: str = ''

    @property
    def default_controller(self) -> str | None:
        """Return the controller started unless told otherwise; None: the setup has none."""
        return dict(self.optional).get(CONTROLLER)

    def nodes(self, choices: dict[str, bool | str | None]) -> list[str]:
        """
        Return the nodes to start; clock sources last, so their first burst is heard.

        ``choices`` maps optional nodes to the user's yes/no, and CONTROLLER to a name of
        CONTROLLER_CHOICES; None or absent = the default.
        """
        chosen = list(self.always)
        for name, default in self.optional:
            choice = default if choices.get(name) is None else choices[name]
            if name == CONTROLLER:
                if choice != 'none':
                    chosen.append(str(choice))
            elif choice:
                chosen.append(name)
        return sorted(chosen, key=lambda name: name in self.clock_sources)


SETUPS: dict[str, Setup] = {
    'thymio': Setup(
        'thymio', 'thymio.yaml', 'thymio.launch.py', ('labeler',),
        (('learner', True), (CONTROLLER, 'none')), sim_time=False,
        summary='a real Thymio running the jeguzzi/ros-thymio driver (and a camera driver)'),
    'sim': Setup(
        'sim', 'sim.yaml', 'sim.launch.py', ('simulator', 'labeler'),
        ((CONTROLLER, 'explorer'), ('learner', True)), sim_time=True,
        clock_sources=('simulator',),
        summary='the built-in simulated world, driven by the explorer'),
    'gazebo': Setup(
        'gazebo', 'gazebo.yaml', 'gazebo.launch.py', ('scan_to_range', 'labeler'),
        ((CONTROLLER, 'explorer'), ('learner', True)), sim_time=True,
        summary='our nodes for a robot in Gazebo (gazebo.launch.py also starts gz-sim and '
                'ros_gz_bridge)'),
    'replay': Setup(
        'replay', 'replay.yaml', 'replay.launch.py', ('labeler',), (('learner', True),),
        sim_time=True,
        summary="a recorded bag played with --clock ('ssl-obstacle replay' or 'ros2 bag play')"),
}

#: Every node any setup starts.
SETUPS_NODE_NAMES = sorted({name for s in SETUPS.values()
                            for name in (*s.always, *(n for n, _ in s.optional))
                            if name != CONTROLLER} | set(CONTROLLERS))


def config_path(name: str) -> pathlib.Path:
    """
    Find a file of config/: the source tree's when running from it, else the installed one.

    The source tree wins so that a developer's edits take effect without a rebuild; an
    installed package has no source tree next to it and uses its share directory.
    """
    source = pathlib.Path(__file__).resolve().parents[1] / 'config' / name
    if source.is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory
        return pathlib.Path(get_package_share_directory('ssl_obstacle')) / 'config' / name
    except (ImportError, LookupError):  # LookupError: PackageNotFoundError's base
        return source


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``ssl-obstacle up`` (the launch files' arguments)."""
    parser.add_argument('setup', choices=sorted(SETUPS),
                        help='; '.join(f'{s.name}: {s.summary}' for s in SETUPS.values()))
    parser.add_argument('--params', help='parameter file replacing config/<setup>.yaml '
                                         '(config/labeler.yaml is still loaded before it)')
    parser.add_argument('--namespace', default='', help="the robot's namespace, e.g. thymio10")
    parser.add_argument('--learner', action=argparse.BooleanOptionalAction, default=None,
                        help='run the learner here (--no-learner: it runs on another machine)')
    parser.add_argument('--controller', choices=CONTROLLER_CHOICES,
                        help='what drives the robot: the explorer (IR only), the avoider (by '
                             'sight, the learned predictions) or none; default: explorer, '
                             'thymio: none; replay has no controller')
    parser.add_argument('--switch-after-updates', type=int, metavar='N',
                        help='N > 0: start the avoider, which explores until the learner has '
                             'made N updates (and reached its switch_min_auc), then drives '
                             'by sight; needs the learner; default: as in the parameter file')
    parser.add_argument('--explorer', action=argparse.BooleanOptionalAction, default=None,
                        help='old spelling of --controller explorer (--no-explorer: none)')
    parser.add_argument('--camera-topic', default='',
                        help='camera image topic if not camera/image_raw (raw topic name; '
                             'compressed transport appends /compressed)')
    parser.add_argument('--camera-transport', choices=('raw', 'compressed'),
                        help='default: as in the parameter file')
    parser.add_argument('--proximity-source', choices=('range', 'laser'),
                        help='proximity/<name> Range topics or proximity/laser; default: as in '
                             'the parameter file')
    parser.add_argument('--checkpoint', help="the learner's checkpoint file (default: as in the "
                                             'parameter file)')
    sim = parser.add_argument_group('sim only')
    sim.add_argument('--world', help='boxes, pillars, walls or random')
    sim.add_argument('--seed', type=int)
    sim.add_argument('--real-time-factor', type=float,
                     help='simulated seconds per second; 0 = as fast as possible')


@dataclass
class Plan:
    """What ``up`` starts: the nodes, their parameter files and overrides, the remaps."""

    setup: Setup
    nodes: list[str]
    param_files: list[pathlib.Path]
    #: node → parameter values set on the command line (they win over the files)
    overrides: dict[str, dict[str, Any]]
    remaps: list[tuple[str, str]]
    namespace: str


def parameter_overrides(setup: Setup, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """
    Return per-node parameter values the command line sets; they win over the files.

    Only options the user gave appear, so an unset option leaves the file's value in force,
    as the launch files' empty-default arguments do.
    """
    overrides: dict[str, dict[str, Any]] = {name: {} for name in SETUPS_NODE_NAMES}
    if args.camera_transport:
        overrides['labeler']['camera_transport'] = args.camera_transport
        overrides['learner']['camera_transport'] = args.camera_transport
    if args.proximity_source:
        overrides['labeler']['proximity_source'] = args.proximity_source
        overrides['avoider']['proximity_source'] = args.proximity_source
    if getattr(args, 'switch_after_updates', None) is not None:
        overrides['avoider']['switch_after_updates'] = int(args.switch_after_updates)
    if args.checkpoint:
        overrides['learner']['checkpoint_path'] = os.path.expanduser(args.checkpoint)
    if setup.name == 'sim':
        if args.world:
            overrides['simulator']['world'] = args.world
        if args.seed is not None:
            overrides['simulator']['seed'] = args.seed
            overrides['explorer']['seed'] = args.seed
            overrides['avoider']['seed'] = args.seed
        if args.real_time_factor is not None:
            overrides['simulator']['real_time_factor'] = float(args.real_time_factor)
    if setup.sim_time:
        for name in SETUPS_NODE_NAMES:
            if name not in setup.clock_sources:
                overrides[name]['use_sim_time'] = True
    return overrides


def camera_remaps(camera_topic: str) -> list[tuple[str, str]]:
    """Return remap rules pointing both camera transports at ``camera_topic``."""
    topic = (camera_topic or '').rstrip('/')
    if not topic or topic == 'camera/image_raw':
        return []
    return [('camera/image_raw', topic), ('camera/image_raw/compressed', topic + '/compressed')]


def choose_controller(setup: Setup, args: argparse.Namespace) -> str | None:
    """
    Return the controller the user asked for (None: the setup's default); ValueError if unclear.

    ``explorer`` is the old yes/no (yes = explorer, no = none); a switch (N > 0) means the
    avoider, which explores first, so it contradicts any other controller and needs the
    learner, whose ``ssl/learner_status`` triggers the handover.
    """
    controller = getattr(args, 'controller', None) or None
    explorer = getattr(args, 'explorer', None)
    switch = getattr(args, 'switch_after_updates', None)
    if controller is not None and controller not in CONTROLLER_CHOICES:
        raise ValueError(f'controller must be one of {", ".join(CONTROLLER_CHOICES)}, '
                         f'not {controller!r}')
    if explorer is not None:
        alias = 'explorer' if explorer else None
        if controller is not None and (controller == 'explorer') != bool(explorer):
            raise ValueError(f'explorer {"true" if explorer else "false"} contradicts '
                             f'controller {controller}: give only controller (explorer is '
                             'its old spelling)')
        controller = controller or alias or 'none'
    if switch is not None and switch < 0:
        raise ValueError(f'switch_after_updates must be 0 or more, not {switch}')
    if setup.default_controller is None:
        if (controller or 'none') != 'none' or switch:
            raise ValueError(f'{setup.name} starts no controller (nothing drives a replayed '
                             'bag): controller and switch_after_updates do not apply')
        return None
    if switch:
        if controller not in (None, 'avoider'):
            raise ValueError(f'switch_after_updates {switch} hands over from exploring to the '
                             f'avoider, which explores itself first: it cannot go with '
                             f'controller {controller} (drop one of them; the avoider and the '
                             'explorer never run together)')
        if args.learner is False:
            raise ValueError(f"switch_after_updates {switch} waits for the learner's status: "
                             'start the learner here, or with the learner on another '
                             "machine set switch_after_updates in the avoider's parameter file")
        return 'avoider'
    return controller


def make_plan(args: argparse.Namespace) -> Plan:
    """Decide what to start from the parsed command line (ValueError for contradictions)."""
    setup = SETUPS[args.setup]
    nodes = setup.nodes({'learner': args.learner, CONTROLLER: choose_controller(setup, args)})
    params = pathlib.Path(args.params) if args.params else config_path(setup.config)
    files = [config_path(BASE_CONFIG), params]
    for path in files:
        if not path.is_file():
            raise SystemExit(f'error: parameter file {path} does not exist')
    overrides = parameter_overrides(setup, args)
    return Plan(setup, nodes, files, {name: overrides[name] for name in nodes},
                camera_remaps(args.camera_topic), args.namespace.strip('/'))


def _launch_flag(value: str | None) -> bool | None:
    text = (value or '').strip().lower()
    return None if not text else text in ('true', '1', 'yes', 'on')


def _launch_int(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f'{name} must be a whole number, not {value!r}') from None


def plan_from_launch_arguments(setup: str, values: Mapping[str, str]) -> Plan:
    """
    Build the plan from a launch file's argument values (strings; '' = not given).

    The launch files call this, so ``ros2 launch`` and ``ssl-obstacle up`` decide in one
    place which nodes start with which parameter files, overrides and remaps.
    """
    def given(name: str) -> str | None:
        return values.get(name) or None

    for name, allowed in (('camera_transport', ('raw', 'compressed')),
                          ('proximity_source', ('range', 'laser'))):
        if given(name) and values[name] not in allowed:
            raise ValueError(f'{name} must be one of {", ".join(allowed)}, not {values[name]!r}')
    args = argparse.Namespace(
        setup=setup, params=given('params'), namespace=values.get('namespace', ''),
        learner=_launch_flag(values.get('learner')),
        explorer=_launch_flag(values.get('explorer')), controller=given('controller'),
        switch_after_updates=_launch_int('switch_after_updates', given('switch_after_updates')),
        camera_topic=values.get('camera_topic', ''),
        camera_transport=given('camera_transport'), proximity_source=given('proximity_source'),
        checkpoint=given('checkpoint'), world=given('world'),
        seed=int(values['seed']) if given('seed') else None,
        real_time_factor=float(values['real_time_factor']) if given('real_time_factor') else None)
    return make_plan(args)


def launch_description(setup: str, arguments: Sequence[tuple[str, str, str]],
                       actions: Sequence[Any] = ()) -> Any:
    """
    Build a launch file's description: its arguments, other ``actions``, the plan's nodes.

    ``arguments`` are ``(name, default, description)``; each launch file lists its own, so
    ``ros2 launch … --show-args`` documents them. Imports ``launch`` here, not at the top:
    the rest of this module runs where ROS's launch is not installed.
    """
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    def nodes(context: Any) -> list:
        values = {name: LaunchConfiguration(name).perform(context) for name, _, _ in arguments}
        plan = plan_from_launch_arguments(setup, values)
        return [Node(package='ssl_obstacle', executable=name, name=name,
                     namespace=plan.namespace,
                     parameters=[*map(str, plan.param_files), plan.overrides[name]],
                     remappings=plan.remaps, output='screen')
                for name in plan.nodes]

    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, default, text in arguments] + [*actions, OpaqueFunction(function=nodes)])


def ros_arguments(plan: Plan, extra: Sequence[str] = ()) -> list[str]:
    """Build the ``--ros-args`` of the process: parameter files, namespace, remaps."""
    ros_args = ['--ros-args']
    for path in plan.param_files:
        ros_args += ['--params-file', str(path)]
    if plan.namespace:
        ros_args += ['-r', f'__ns:=/{plan.namespace}']
    for source, target in plan.remaps:  # the explorer and simulator have no camera input
        ros_args += ['-r', f'{source}:={target}']
    extra = list(extra)
    return ros_args + (extra[1:] if extra[:1] == ['--ros-args'] else extra)


def run(args: argparse.Namespace, extra: Sequence[str] = ()) -> int:
    """Start the setup's nodes in this process until Ctrl-C."""
    from rclpy.parameter import Parameter

    from .cli import run_nodes

    try:
        plan = make_plan(args)
    except ValueError as error:
        raise SystemExit(f'error: {error}') from None
    overrides = {name: [Parameter(key, value=value) for key, value in values.items()]
                 for name, values in plan.overrides.items()}
    print(f'ssl-obstacle up {plan.setup.name}: {", ".join(plan.nodes)} in namespace '
          f'/{plan.namespace}; parameters {" then ".join(map(str, plan.param_files))}',
          file=sys.stderr, flush=True)
    return run_nodes(plan.nodes, ros_arguments(plan, extra), overrides)
