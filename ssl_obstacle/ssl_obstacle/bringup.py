"""
The launch files' setups: which nodes start, with which parameter files, overrides, remaps.

The launch files in launch/ call :func:`launch_description` and ``ssl-obstacle up``
(``commands/up.py``) calls :func:`make_plan`, so each setup starts the same nodes with the
same parameter files and the same overrides either way (test_launch_files.py checks that
they agree), and a robot brought up either way runs one configuration. Every setup loads
config/labeler.yaml (the label rule, shared with ``ssl-obstacle export``) first and its own
file, which refines it, second.

Learning is two nodes joined by topics: on each robot the labeler publishes
``ssl/labeled_frames`` and the predictor (numpy, no PyTorch) predicts from every camera frame
with the newest model of ``ssl/model``; the trainer (PyTorch) learns from the labeled frames
of one robot or of a fleet (its ``robots`` parameter) and publishes the model and
``ssl/learner_status``. ``trainer`` (old name: ``learner``) says whether a setup starts the
trainer; the ``trainer`` setup is the trainer alone, for a workstation that learns for robots
whose labelers and predictors run elsewhere. ``up`` runs the trainer in a child process of
its own, as ``ros2 launch`` runs every node, so that prediction never shares an interpreter
with training (see ``commands/up.py``).

Each setup but replay and trainer has one controller slot, filled by the explorer, the
avoider or nothing (``controller``), so two nodes never publish ``cmd_vel`` at once. The old
``explorer`` yes/no still works: yes = the explorer, no = no controller.

``sim`` with ``robots`` N > 1 simulates a fleet: one simulator hosts robots ``robot1`` ..
``robotN`` (under ``/<namespace>/`` when a namespace is given), robot i in a world of its
own (the setup's world first, then the other layouts) with seed ``seed + i``; each robot
gets its own labeler, predictor and controller in its namespace, and one trainer learns
from all of them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import os
import pathlib
import re
from typing import Any, Mapping, Sequence

#: The label rule every setup loads first (``export --params`` reads the same file).
BASE_CONFIG = 'labeler.yaml'

#: The place of the controller among a setup's optional nodes; its "default" there is the
#: name of the controller the setup starts unless told otherwise.
CONTROLLER = 'controller'
#: The nodes that can fill the slot (each publishes cmd_vel), and 'none'.
CONTROLLERS = ('explorer', 'avoider')
CONTROLLER_CHOICES = (*CONTROLLERS, 'none')
#: The node that learns; the only one that needs PyTorch.
TRAINER = 'trainer'
#: Nodes ``up`` runs in a child process of their own (when the setup has other nodes).
SEPARATE_PROCESS = (TRAINER,)
#: Nodes of which a fleet has one; every other node runs once per robot.
FLEET_SHARED = (TRAINER, 'simulator')
#: A simulated fleet's robots are robot1, robot2, ...
FLEET_PREFIX = 'robot'


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
    #: what ``robots`` means: 'count' (sim: how many simulated robots), 'names' (trainer:
    #: the namespaces of the robots to learn from); '' = the setup takes no robots
    robots: str = ''
    #: why the setup has no controller slot ('' when it has one)
    no_controller: str = ''

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
        'thymio', 'thymio.yaml', 'thymio.launch.py', ('labeler', 'predictor'),
        ((TRAINER, True), (CONTROLLER, 'none')), sim_time=False,
        summary='a real Thymio running the jeguzzi/ros-thymio driver (and a camera driver)'),
    'sim': Setup(
        'sim', 'sim.yaml', 'sim.launch.py', ('simulator', 'labeler', 'predictor'),
        ((CONTROLLER, 'explorer'), (TRAINER, True)), sim_time=True,
        clock_sources=('simulator',), robots='count',
        summary='the built-in simulated world, driven by the explorer (--robots N: a fleet)'),
    'gazebo': Setup(
        'gazebo', 'gazebo.yaml', 'gazebo.launch.py', ('scan_to_range', 'labeler', 'predictor'),
        ((CONTROLLER, 'explorer'), (TRAINER, True)), sim_time=True,
        summary='our nodes for a robot in Gazebo (gazebo.launch.py also starts gz-sim and '
                'ros_gz_bridge)'),
    'replay': Setup(
        'replay', 'replay.yaml', 'replay.launch.py', ('labeler', 'predictor'),
        ((TRAINER, True),), sim_time=True, no_controller='nothing drives a replayed bag',
        summary="a recorded bag played with --clock ('ssl-obstacle replay' or 'ros2 bag play')"),
    'trainer': Setup(
        'trainer', 'thymio.yaml', 'trainer.launch.py', (TRAINER,), (), sim_time=False,
        robots='names', no_controller='it only trains: each robot runs its own controller',
        summary='the trainer alone, e.g. on a workstation: it learns for the robot of '
                '--namespace, or for the robots of --robots (their labelers and predictors '
                'run on them)'),
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


@dataclass(frozen=True)
class PlannedNode:
    """One node of a plan: its name (also its executable), namespace and overrides."""

    name: str
    namespace: str
    #: parameter values set on the command line (they win over the files)
    overrides: dict[str, Any]

    @property
    def path(self) -> str:
        """Return the node's full name, e.g. /robot2/labeler."""
        return '/' + '/'.join(part for part in (self.namespace, self.name) if part)


@dataclass
class Plan:
    """What ``up`` starts: the nodes, their parameter files and overrides, the remaps."""

    setup: Setup
    entries: list[PlannedNode]
    param_files: list[pathlib.Path]
    remaps: list[tuple[str, str]]
    #: the namespace given (the trainer's and the simulator's; one robot's nodes')
    namespace: str
    #: the robots of a fleet or of the trainer setup (namespaces without leading /);
    #: [] = one robot, in ``namespace``
    robots: list[str]

    @property
    def nodes(self) -> list[str]:
        """Return the nodes' names in start order (a fleet's repeat, one per robot)."""
        return [entry.name for entry in self.entries]

    @property
    def overrides(self) -> dict[str, dict[str, Any]]:
        """Return each node's overrides by name; only for plans with one node per name."""
        if len(set(self.nodes)) != len(self.nodes):
            raise ValueError('a fleet has several nodes of one name: use node(name, '
                             'namespace)')
        return {entry.name: entry.overrides for entry in self.entries}

    def node(self, name: str, namespace: str | None = None) -> PlannedNode:
        """Return the node ``name`` (in ``namespace``; None: the plan's only one)."""
        found = [e for e in self.entries if e.name == name
                 and (namespace is None or e.namespace == namespace.strip('/'))]
        if len(found) != 1:
            raise KeyError(f'{len(found)} nodes {name!r} in namespace {namespace!r}')
        return found[0]


#: One name of a namespace (ROS: letters, digits, underscores, not starting with a digit).
_NAMESPACE = re.compile(r'[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*')


def parse_robot_names(text: str | Sequence[str] | None) -> list[str]:
    """
    Read the trainer's robots; return their namespaces without slashes.

    ``[thymio1,thymio2]`` (launch's list syntax), ``thymio1,thymio2``, a YAML list with
    quotes, or a sequence of names. Leading and trailing slashes are dropped (the trainer
    takes the names as absolute anyway); an empty text or ``[]`` is no robot: the trainer
    learns in its own namespace.
    """
    if text is None:
        return []
    if isinstance(text, str):
        body = text.strip()
        if body.startswith('[') and body.endswith(']'):
            body = body[1:-1]
        parts = re.split(r'[,\s]+', body)
    else:
        parts = [str(part) for part in text]
    names: list[str] = []
    for part in parts:
        name = part.strip().strip('\'"').strip('/')
        if not name:
            continue
        if not _NAMESPACE.fullmatch(name):
            raise ValueError(f'robots: {part.strip()!r} is not a namespace (letters, digits '
                             'and _, not starting with a digit; / between levels)')
        if name in names:
            raise ValueError(f'robots: {name} is listed twice')
        names.append(name)
    return names


def parse_robot_count(text: str | int | None) -> int:
    """Read sim's robots: a whole number, at least 1 (None or '' = 1)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return 1
    try:
        count = int(str(text).strip())
    except ValueError:
        raise ValueError(f'robots must be a whole number of simulated robots for sim, not '
                         f'{text!r}') from None
    if count < 1:
        raise ValueError(f'robots must be 1 or more, not {count}')
    return count


def fleet_robots(setup: Setup, robots: str | None, namespace: str) -> list[str]:
    """Return the robots' namespaces for ``robots`` as the setup reads it ([] = none)."""
    if setup.robots == 'count':
        count = parse_robot_count(robots)
        if count == 1:
            return []
        prefix = f'{namespace}/' if namespace else ''
        return [f'{prefix}{FLEET_PREFIX}{index + 1}' for index in range(count)]
    if setup.robots == 'names':
        return parse_robot_names(robots)
    if robots not in (None, ''):
        raise ValueError('robots applies to sim (how many simulated robots) and trainer (the '
                         f'namespaces to learn from), not {setup.name}: start {setup.name} '
                         'once per robot, each with its namespace')
    return []


def file_value(files: Sequence[pathlib.Path], node: str, key: str, default: Any) -> Any:
    """Return ``key`` as ``node`` gets it from the parameter files (the last file wins)."""
    import yaml

    value = default
    for path in files:
        with open(path, encoding='utf-8') as stream:
            document = yaml.safe_load(stream) or {}
        if not isinstance(document, Mapping):
            continue
        for section in ('/**', f'/**/{node}', node, f'/{node}'):
            values = (document.get(section) or {}).get('ros__parameters') \
                if isinstance(document.get(section), Mapping) else None
            if isinstance(values, Mapping) and key in values:
                value = values[key]
    return value


def fleet_worlds(first: str, count: int) -> list[str]:
    """Return one layout per robot: ``first``, then the other layouts in turn."""
    from .sim.world import WORLD_NAMES

    others = [name for name in (*WORLD_NAMES, 'random') if name != first]
    return [first, *(others[index % len(others)] for index in range(count - 1))]


def parameter_overrides(setup: Setup, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """
    Return per-node parameter values the command line sets; they win over the files.

    Only options the user gave appear, so an unset option leaves the file's value in force,
    as the launch files' empty-default arguments do.
    """
    overrides: dict[str, dict[str, Any]] = {name: {} for name in SETUPS_NODE_NAMES}
    if args.camera_transport:
        overrides['labeler']['camera_transport'] = args.camera_transport
        overrides['predictor']['camera_transport'] = args.camera_transport
    if args.proximity_source:
        overrides['labeler']['proximity_source'] = args.proximity_source
        overrides['avoider']['proximity_source'] = args.proximity_source
    if getattr(args, 'switch_after_updates', None) is not None:
        overrides['avoider']['switch_after_updates'] = int(args.switch_after_updates)
    if args.checkpoint:
        overrides[TRAINER]['checkpoint_path'] = os.path.expanduser(args.checkpoint)
    if getattr(args, 'model_file', None):
        overrides['predictor']['model_file'] = os.path.expanduser(args.model_file)
    if getattr(args, 'device', None):
        overrides[TRAINER]['device'] = args.device
    if setup.name == 'sim':
        if args.world:
            overrides['simulator']['world'] = args.world
        if args.seed is not None:
            overrides['simulator']['seed'] = args.seed
            overrides['explorer']['seed'] = args.seed
            overrides['avoider']['seed'] = args.seed
        if args.real_time_factor is not None:
            overrides['simulator']['real_time_factor'] = float(args.real_time_factor)
    use_sim_time = getattr(args, 'use_sim_time', None)
    if use_sim_time is not None and setup.name != 'trainer':
        raise ValueError(f'use_sim_time applies to the trainer setup only: {setup.name} '
                         'decides its clock itself')
    if setup.sim_time or use_sim_time:
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


def _yes_no(value: bool) -> str:
    return 'true' if value else 'false'


def choose_trainer(setup: Setup, args: argparse.Namespace) -> bool | None:
    """
    Return whether the user wants the trainer (None: the setup's default); ValueError if unclear.

    ``learner`` is the trainer's old name: either may be given, both only if they agree.
    """
    trainer = getattr(args, 'trainer', None)
    learner = getattr(args, 'learner', None)
    if trainer is not None and learner is not None and bool(trainer) != bool(learner):
        raise ValueError(f'learner {_yes_no(learner)} contradicts trainer {_yes_no(trainer)}: '
                         'give only trainer (learner is its old name)')
    choice = trainer if trainer is not None else learner
    if setup.name == 'trainer' and choice is False:
        raise ValueError('the trainer setup is the trainer alone: trainer false leaves it '
                         'nothing to start')
    return choice


def choose_controller(setup: Setup, args: argparse.Namespace,
                      trainer: bool | None = None) -> str | None:
    """
    Return the controller the user asked for (None: the setup's default); ValueError if unclear.

    ``explorer`` is the old yes/no (yes = explorer, no = none); a switch (N > 0) means the
    avoider, which explores first, so it contradicts any other controller and needs the
    trainer, whose ``ssl/learner_status`` triggers the handover.
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
            raise ValueError(f'explorer {_yes_no(explorer)} contradicts controller '
                             f'{controller}: give only controller (explorer is its old '
                             'spelling)')
        controller = controller or alias or 'none'
    if switch is not None and switch < 0:
        raise ValueError(f'switch_after_updates must be 0 or more, not {switch}')
    if setup.default_controller is None:
        if (controller or 'none') != 'none' or switch:
            raise ValueError(f'{setup.name} starts no controller ({setup.no_controller}): '
                             'controller and switch_after_updates do not apply')
        return None
    if switch:
        if controller not in (None, 'avoider'):
            raise ValueError(f'switch_after_updates {switch} hands over from exploring to the '
                             f'avoider, which explores itself first: it cannot go with '
                             f'controller {controller} (drop one of them; the avoider and the '
                             'explorer never run together)')
        if trainer is False:
            raise ValueError(f"switch_after_updates {switch} waits for the trainer's status "
                             '(ssl/learner_status): start the trainer here, or, with the '
                             'trainer on another machine (ssl-obstacle up trainer --robots '
                             '<namespace>, or trainer.launch.py robots:=[<namespace>]), set '
                             "switch_after_updates in the avoider's parameter file")
        return 'avoider'
    return controller


def make_plan(args: argparse.Namespace) -> Plan:
    """Decide what to start from the parsed command line (ValueError for contradictions)."""
    setup = SETUPS[args.setup]
    trainer = choose_trainer(setup, args)
    names = setup.nodes({TRAINER: trainer, CONTROLLER: choose_controller(setup, args, trainer)})
    params = pathlib.Path(args.params) if args.params else config_path(setup.config)
    files = [config_path(BASE_CONFIG), params]
    for path in files:
        if not path.is_file():
            raise SystemExit(f'error: parameter file {path} does not exist')
    namespace = (args.namespace or '').strip().strip('/')
    robots = fleet_robots(setup, getattr(args, 'robots', None), namespace)
    overrides = parameter_overrides(setup, args)
    if setup.robots == 'count' and robots:
        entries = _fleet(setup, names, overrides, robots, namespace, files, args)
    else:
        entries = [PlannedNode(name, namespace, dict(overrides[name])) for name in names]
        for entry in entries:
            if entry.name == TRAINER and robots:
                entry.overrides['robots'] = list(robots)
    return Plan(setup, entries, files, camera_remaps(args.camera_topic), namespace, robots)


def _fleet(setup: Setup, names: Sequence[str], overrides: dict[str, dict[str, Any]],
           robots: list[str], namespace: str, files: Sequence[pathlib.Path],
           args: argparse.Namespace) -> list[PlannedNode]:
    """Plan a simulated fleet: each robot's nodes in its namespace, one trainer, one world."""
    seed = args.seed if args.seed is not None else int(file_value(files, 'simulator', 'seed', 0))
    world = args.world or str(file_value(files, 'simulator', 'world', 'boxes'))
    entries = []
    for index, robot in enumerate(robots):
        for name in names:
            if name in FLEET_SHARED:
                continue
            values = dict(overrides[name])
            if name in CONTROLLERS:  # as the simulator's robot i: seed + i
                values['seed'] = seed + index
            entries.append(PlannedNode(name, robot, values))
    for name in names:  # in the setup's order: the simulator (the clock) last
        if name in FLEET_SHARED:
            values = dict(overrides[name], robots=list(robots))
            if name == 'simulator':
                values['worlds'] = fleet_worlds(world, len(robots))
            entries.append(PlannedNode(name, namespace, values))
    return entries


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
    use_sim_time = _launch_flag(values.get('use_sim_time'))
    args = argparse.Namespace(
        setup=setup, params=given('params'), namespace=values.get('namespace', ''),
        trainer=_launch_flag(values.get('trainer')), learner=_launch_flag(values.get('learner')),
        explorer=_launch_flag(values.get('explorer')), controller=given('controller'),
        switch_after_updates=_launch_int('switch_after_updates', given('switch_after_updates')),
        camera_topic=values.get('camera_topic', ''),
        camera_transport=given('camera_transport'), proximity_source=given('proximity_source'),
        checkpoint=given('checkpoint'), model_file=given('model_file'), device=given('device'),
        robots=given('robots'), use_sim_time=True if use_sim_time else None,
        world=given('world'), seed=int(values['seed']) if given('seed') else None,
        real_time_factor=float(values['real_time_factor']) if given('real_time_factor') else None)
    return make_plan(args)


def launch_description(setup: str, arguments: Sequence[tuple[str, str, str]],
                       actions: Sequence[Any] = ()) -> Any:
    """
    Build a launch file's description: its arguments, other ``actions``, the plan's nodes.

    ``arguments`` are ``(name, default, description)``; each launch file lists its own, so
    ``ros2 launch … --show-args`` documents them. Imports ``launch`` here, not at the top:
    the rest of this module runs where ROS's launch is not installed. ``ros2 launch`` runs
    every node in a process of its own (the trainer too).
    """
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    def nodes(context: Any) -> list:
        values = {name: LaunchConfiguration(name).perform(context) for name, _, _ in arguments}
        plan = plan_from_launch_arguments(setup, values)
        return [Node(package='ssl_obstacle', executable=entry.name, name=entry.name,
                     namespace=entry.namespace,
                     parameters=[*map(str, plan.param_files), entry.overrides],
                     remappings=plan.remaps, output='screen')
                for entry in plan.entries]

    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, default, text in arguments] + [*actions, OpaqueFunction(function=nodes)])


def ros_arguments(plan: Plan, extra: Sequence[str] = ()) -> list[str]:
    """
    Build the ``--ros-args`` of the processes: parameter files, remaps, the user's own.

    Not the namespace: each node gets its own (a fleet's robots differ), the nodes of this
    process as they are created, the trainer's process as ``-r __ns:=``.
    """
    ros_args = ['--ros-args']
    for path in plan.param_files:
        ros_args += ['--params-file', str(path)]
    for source, target in plan.remaps:  # the explorer and simulator have no camera input
        ros_args += ['-r', f'{source}:={target}']
    extra = list(extra)
    return ros_args + (extra[1:] if extra[:1] == ['--ros-args'] else extra)
