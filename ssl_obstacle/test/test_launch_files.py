"""
The launch files, checked as far as possible without ``launch`` and ``launch_ros``.

Those packages cannot be installed here, so each launch file is executed against a small
stand-in that records what it asks for: which arguments it declares and which nodes, with
which parameter files, overrides, namespace and remaps, it starts for given argument values.
That plan is compared with ``ssl-obstacle up``'s for the same options, so the two ways of
bringing a robot up run one configuration; every parameter file is checked against what the
named node really declares by starting it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import sys
import types
from typing import Any

from ament_index_python import packages
import pytest
import rclpy
from rclpy.context import Context
from ssl_obstacle import bringup
from ssl_obstacle.commands import up
from ssl_obstacle.io.params_file import node_sections, read_ros_parameters
from ssl_obstacle.nodes.registry import node_factory
from test_packaging import console_scripts, EXTERNAL_PACKAGES
import yaml

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]
LAUNCH_DIR = PACKAGE_DIR / 'launch'


class Recorded:
    """A launch entity: its class name, positional and keyword arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(Recorded):
    """Stands for ``launch.substitutions.LaunchConfiguration``: performs to the value."""

    def perform(self, context: dict[str, str]) -> str:
        return context[self.args[0]]


def _recording_module(name: str, **classes: type) -> types.ModuleType:
    """Return a module whose every attribute is a recording class (classes override some)."""
    module = types.ModuleType(name)

    def make(attribute: str) -> type:
        if attribute.startswith('__'):
            raise AttributeError(attribute)
        return classes.get(attribute) or type(attribute, (Recorded,), {})
    module.__getattr__ = make  # PEP 562
    return module


def load_launch_file(path: pathlib.Path, monkeypatch) -> types.ModuleType:
    """Import a launch file with the stand-in ``launch`` and ``launch_ros`` modules."""
    fakes = {'launch': _recording_module('launch'),
             'launch.actions': _recording_module('launch.actions'),
             'launch.substitutions': _recording_module(
                 'launch.substitutions', LaunchConfiguration=LaunchConfiguration),
             'launch.launch_description_sources': _recording_module(
                 'launch.launch_description_sources'),
             'launch.conditions': _recording_module('launch.conditions'),
             'launch_ros': _recording_module('launch_ros'),
             'launch_ros.actions': _recording_module('launch_ros.actions'),
             'launch_ros.substitutions': _recording_module('launch_ros.substitutions')}
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    real_share = packages.get_package_share_directory

    def share(package: str, *args: Any, **kwargs: Any) -> str:  # Gazebo is not installed
        if package in EXTERNAL_PACKAGES:
            return f'/opt/ros/share/{package}'
        return real_share(package, *args, **kwargs)
    monkeypatch.setattr(packages, 'get_package_share_directory', share)
    spec = importlib.util.spec_from_file_location(path.stem.replace('.', '_'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resolve(value: Any, context: dict[str, str]) -> Any:
    """Perform substitutions the way launch does: configurations, and lists joined."""
    if isinstance(value, LaunchConfiguration):
        return value.perform(context)
    if isinstance(value, list) and any(isinstance(v, Recorded) for v in value):
        return ''.join(str(resolve(v, context)) for v in value)
    if isinstance(value, dict):
        return {k: resolve(v, context) for k, v in value.items()}
    return value


def condition_holds(entity: Recorded, context: dict[str, str]) -> bool:
    """Evaluate an ``IfCondition``/``UnlessCondition`` as launch does (no condition: True)."""
    condition = entity.kwargs.get('condition')
    if condition is None:
        return True
    truth = str(resolve(condition.args[0], context)).strip().lower() in ('true', '1')
    return truth if type(condition).__name__ == 'IfCondition' else not truth


def launch_plan(path: pathlib.Path, monkeypatch, **values: str) -> tuple[dict, list]:
    """Return (declared argument defaults, started Node plans) for argument values."""
    description = load_launch_file(path, monkeypatch).generate_launch_description()
    entities = description.args[0]
    declared = {e.args[0]: e.kwargs['default_value'] for e in entities
                if type(e).__name__ == 'DeclareLaunchArgument'}
    unknown = set(values) - set(declared)
    assert not unknown, f'{path.name} declares no argument {unknown}'
    context = {**declared, **values}
    nodes = [e for e in entities if type(e).__name__ == 'Node']
    for entity in entities:
        if type(entity).__name__ == 'OpaqueFunction':
            nodes += [n for n in entity.kwargs['function'](context)
                      if type(n).__name__ == 'Node']
    return declared, [node_plan(n, context) for n in nodes if condition_holds(n, context)]


def node_plan(node: Recorded, context: dict[str, str]) -> dict[str, Any]:
    """Resolve a Node's arguments; split its parameters into file names and overrides."""
    files, overrides = [], {}
    for item in node.kwargs.get('parameters', []):
        item = resolve(item, context)
        if isinstance(item, dict):
            overrides.update(item)
        else:
            files.append(os.path.basename(str(item)))
    return {'package': node.kwargs['package'], 'executable': node.kwargs['executable'],
            'name': node.kwargs.get('name'), 'files': files, 'overrides': overrides,
            'namespace': resolve(node.kwargs.get('namespace', ''), context),
            'remaps': list(node.kwargs.get('remappings', []))}


def up_plan(setup: str, **options: Any) -> bringup.Plan:
    """Return what ``ssl-obstacle up SETUP`` with these options would start."""
    parser = argparse.ArgumentParser()
    up.add_arguments(parser)
    argv = [setup]
    for name, value in options.items():
        flag = '--' + name.replace('_', '-')
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append('--no-' + name.replace('_', '-'))
        else:
            argv += [flag, str(value)]
    return bringup.make_plan(parser.parse_args(argv))


#: (setups, argument values) to compare the launch files and ``up`` on (setups None: every
#: setup); options a setup's launch file does not declare are left out for it.
CASES = [
    (None, {}),
    (None, {'namespace': 'thymio10'}),
    (None, {'namespace': 'thymio10', 'trainer': 'false', 'explorer': 'true',
            'camera_topic': 'camera/color/image_raw', 'camera_transport': 'compressed',
            'proximity_source': 'laser', 'checkpoint': '/tmp/robot.pt'}),
    (None, {'world': 'pillars', 'seed': '3', 'real_time_factor': '0', 'explorer': 'false'}),
    (None, {'controller': 'avoider'}),
    (None, {'namespace': 'thymio10', 'switch_after_updates': '5'}),
    (None, {'controller': 'avoider', 'switch_after_updates': '0', 'seed': '3',
            'explorer': 'false', 'proximity_source': 'laser'}),
    (None, {'controller': 'none', 'trainer': 'false'}),
    (None, {'controller': 'explorer', 'explorer': 'true', 'switch_after_updates': '0'}),
    (None, {'learner': 'false'}),  # the old name
    (None, {'learner': 'true', 'trainer': 'true', 'model_file': '/tmp/model.pt',
            'checkpoint': '/tmp/trainer.pt', 'device': 'cuda'}),
    (('sim',), {'robots': '3', 'seed': '2', 'world': 'walls'}),
    (('sim',), {'robots': '2', 'namespace': 'fleet', 'controller': 'avoider',
                'switch_after_updates': '40', 'checkpoint': '/tmp/fleet.pt'}),
    (('sim',), {'robots': '2', 'learner': 'false', 'camera_transport': 'compressed'}),
    (('sim',), {'robots': '1', 'namespace': 'thymio10'}),
    (('trainer',), {'robots': '[thymio1,thymio2]', 'use_sim_time': 'true'}),
    (('trainer',), {'robots': 'thymio1, thymio2', 'namespace': 'ws', 'checkpoint': '/tmp/a.pt'}),
]
#: the cases that apply to each setup
SETUP_CASES = [(setup, case) for setup in sorted(bringup.SETUPS)
               for case, (setups, _) in enumerate(CASES) if setups is None or setup in setups]


def _option(name: str, value: str) -> Any:
    if value in ('true', 'false'):
        return value == 'true'
    return value


def _ours(nodes: list[dict]) -> list[dict]:
    return [n for n in nodes if n['package'] == 'ssl_obstacle']  # not Gazebo's


def _where(nodes: list[dict]) -> list[tuple[str, str]]:
    return sorted((n['namespace'], n['executable']) for n in nodes)


@pytest.mark.parametrize(('setup', 'case'), SETUP_CASES)
def test_launch_file_and_up_start_the_same_nodes_with_the_same_configuration(
        setup, case, monkeypatch):
    spec = bringup.SETUPS[setup]
    path = LAUNCH_DIR / spec.launch_file
    declared, _ = launch_plan(path, monkeypatch)
    values = {k: v for k, v in CASES[case][1].items() if k in declared}
    _, launched_nodes = launch_plan(path, monkeypatch, **values)
    nodes = _ours(launched_nodes)
    plan = up_plan(setup, **{k: _option(k, v) for k, v in values.items()})

    assert _where(nodes) == sorted((e.namespace, e.name) for e in plan.entries)
    for launched in nodes:
        name = launched['executable']
        entry = plan.node(name, launched['namespace'])
        assert launched['package'] == 'ssl_obstacle'
        assert launched['name'] == name
        assert launched['files'] == [p.name for p in plan.param_files]
        assert launched['overrides'] == entry.overrides, entry.path
        if launched['remaps'] or name in ('labeler', 'predictor'):
            assert launched['remaps'] == plan.remaps, name


@pytest.mark.parametrize('path', sorted(LAUNCH_DIR.glob('*.launch.py')), ids=lambda p: p.name)
def test_every_launched_node_is_an_installed_executable_with_existing_parameter_files(
        path, monkeypatch):
    scripts = console_scripts()
    shipped = {p.name for p in (PACKAGE_DIR / 'config').glob('*.yaml')}
    _, nodes = launch_plan(path, monkeypatch)
    ours = _ours(nodes)
    assert ours, f'{path.name} starts none of our nodes'
    for node in ours:
        assert node['executable'] in scripts
        for name in node['files']:
            assert name in shipped, f'{path.name}: {name} is not in config/'


def test_every_setup_has_its_launch_file_and_no_launch_file_starts_the_old_learner(
        monkeypatch):
    files = {p.name for p in LAUNCH_DIR.glob('*.launch.py')}
    assert {s.launch_file for s in bringup.SETUPS.values()} <= files
    for name in sorted(files):
        declared, nodes = launch_plan(LAUNCH_DIR / name, monkeypatch)
        assert 'learner' not in {n['executable'] for n in nodes}, name
        if name != 'labeler.launch.py' and 'trainer' in {n['executable'] for n in nodes}:
            assert name == 'trainer.launch.py' or declared.get('trainer') == '', name
            assert name == 'trainer.launch.py' or declared.get('learner') == '', name


@pytest.mark.parametrize('setup', sorted(bringup.SETUPS))
def test_up_finds_its_parameter_files(setup):
    plan = up_plan(setup)
    assert [p.name for p in plan.param_files] == [bringup.BASE_CONFIG,
                                                  bringup.SETUPS[setup].config]
    assert all(p.is_file() for p in plan.param_files)
    plan = up_plan(setup, namespace='/thymio10/', camera_topic='cam/image')
    args = bringup.ros_arguments(plan, ['--ros-args', '-p', 'x:=1'])
    assert args[:5] == ['--ros-args', '--params-file', str(plan.param_files[0]),
                        '--params-file', str(plan.param_files[1])]
    assert 'camera/image_raw/compressed:=cam/image/compressed' in args
    assert args[-2:] == ['-p', 'x:=1']  # the user's own, after ours
    # The namespace is each node's own (a fleet's robots differ), not one for the process.
    assert not any(a.startswith('__ns:=') for a in args)
    assert {e.namespace for e in plan.entries} == {'thymio10'}


def test_up_rejects_a_missing_parameter_file(tmp_path):
    with pytest.raises(SystemExit, match='does not exist'):
        up_plan('thymio', params=tmp_path / 'nope.yaml')


def _sections():
    for path in sorted((PACKAGE_DIR / 'config').glob('*.yaml')):
        if not isinstance(yaml.safe_load(path.read_text()), dict):
            continue  # not a ROS parameter file (the Gazebo bridge's topic list)
        names = node_sections(path) or ['labeler']  # labeler.yaml: /** only, the rule
        for name in names:
            yield pytest.param(path, name, id=f'{path.name}:{name}')


@pytest.mark.parametrize(('path', 'node_name'), list(_sections()))
def test_every_parameter_in_a_config_section_is_declared_by_that_node(
        path, node_name, tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))  # a trainer's checkpoint lands here, if any
    monkeypatch.chdir(tmp_path)
    niceness = []  # the trainer's nice would lower this test process for good
    monkeypatch.setattr(os, 'nice', niceness.append)
    values = read_ros_parameters(path, node_name)
    context = Context()
    rclpy.init(context=context, args=['test', '--ros-args', '--params-file', str(path)])
    try:
        node = node_factory(node_name)(context=context)
        try:
            undeclared = set(values) - set(node._parameters)
            assert not undeclared, f'{path.name}: {node_name} does not declare {undeclared}'
            for name, value in values.items():  # the file's types match the declarations
                got = node.get_parameter(name).value
                assert type(got) is type(value), (name, got, value)
                assert got == value, name  # and the node really took the file's value
            if node_name == 'trainer':
                assert niceness == ([values['nice']] if values.get('nice', 0) > 0 else [])
        finally:
            if hasattr(node, 'close'):
                node.close()
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


# ------------------------------------------------------------------ the controller slot
def _launched(setup: str, monkeypatch, **values: str) -> list[str]:
    path = LAUNCH_DIR / bringup.SETUPS[setup].launch_file
    _, nodes = launch_plan(path, monkeypatch, **values)
    return sorted(n['executable'] for n in nodes if n['package'] == 'ssl_obstacle')


@pytest.mark.parametrize('setup, default', [('sim', 'explorer'), ('gazebo', 'explorer'),
                                            ('thymio', None)])
def test_controller_defaults_and_the_old_explorer_flag(setup, default, monkeypatch):
    def controllers(**values: str) -> set[str]:
        launched = set(_launched(setup, monkeypatch, **values))
        assert launched == set(up_plan(setup, **{k: _option(k, v)
                                                 for k, v in values.items()}).nodes)
        return launched & set(bringup.CONTROLLERS)

    assert controllers() == ({default} if default else set())
    assert controllers(explorer='true') == {'explorer'}
    assert controllers(explorer='false') == set()
    assert controllers(controller='avoider') == {'avoider'}
    assert controllers(controller='avoider', explorer='false') == {'avoider'}
    assert controllers(controller='none') == set()
    assert controllers(switch_after_updates='7') == {'avoider'}
    assert controllers(switch_after_updates='0') == ({default} if default else set())


@pytest.mark.parametrize('setup', ['sim', 'gazebo', 'thymio'])
def test_a_switch_starts_the_avoider_with_it_and_the_trainer(setup, monkeypatch):
    plan = up_plan(setup, switch_after_updates=500)
    assert 'avoider' in plan.nodes and 'trainer' in plan.nodes
    assert 'explorer' not in plan.nodes
    assert plan.overrides['avoider']['switch_after_updates'] == 500
    path = LAUNCH_DIR / bringup.SETUPS[setup].launch_file
    _, nodes = launch_plan(path, monkeypatch, switch_after_updates='500')
    avoider = next(n for n in nodes if n['executable'] == 'avoider')
    assert avoider['overrides']['switch_after_updates'] == 500
    # Without a switch on the command line the parameter file's value stays in force.
    assert 'switch_after_updates' not in up_plan(setup, controller='avoider').overrides[
        'avoider']


@pytest.mark.parametrize('values, message', [
    ({'controller': 'explorer', 'switch_after_updates': '5'}, 'cannot go with controller '
                                                              'explorer'),
    ({'explorer': 'true', 'switch_after_updates': '5'}, 'cannot go with controller explorer'),
    ({'controller': 'none', 'switch_after_updates': '5'}, 'cannot go with controller none'),
    ({'controller': 'avoider', 'explorer': 'true'}, 'explorer true contradicts controller '
                                                    'avoider'),
    ({'controller': 'explorer', 'explorer': 'false'}, 'contradicts'),
    ({'switch_after_updates': '5', 'trainer': 'false'}, "waits for the trainer's status"),
    ({'switch_after_updates': '5', 'learner': 'false'}, 'up trainer --robots <namespace>'),
    ({'trainer': 'true', 'learner': 'false'}, 'learner false contradicts trainer true: give '
                                              'only trainer'),
    ({'trainer': 'false', 'learner': 'true'}, 'learner true contradicts trainer false'),
    ({'switch_after_updates': '-1'}, 'must be 0 or more'),
])
@pytest.mark.parametrize('setup', ['sim', 'thymio'])
def test_contradicting_controller_options_are_errors_both_ways(setup, values, message,
                                                               monkeypatch):
    with pytest.raises(ValueError, match=message):
        _launched(setup, monkeypatch, **values)
    with pytest.raises(ValueError, match=message):
        up_plan(setup, **{k: _option(k, v) for k, v in values.items()})


def test_launch_arguments_of_the_wrong_kind_are_named(monkeypatch):
    with pytest.raises(ValueError, match='controller must be one of'):
        _launched('sim', monkeypatch, controller='avoidr')
    with pytest.raises(ValueError, match='switch_after_updates must be a whole number'):
        _launched('sim', monkeypatch, switch_after_updates='many')


def test_up_reports_contradictions_as_an_error_message_not_a_traceback():
    parser = argparse.ArgumentParser()
    up.add_arguments(parser)
    args = parser.parse_args(['sim', '--controller', 'explorer', '--switch-after-updates', '3'])
    with pytest.raises(SystemExit, match=r'^error: switch_after_updates 3'):
        up.run(args)


@pytest.mark.parametrize('setup', ['replay', 'trainer'])
def test_replay_and_trainer_have_no_controller(setup):
    assert bringup.SETUPS[setup].default_controller is None
    assert not set(up_plan(setup).nodes) & set(bringup.CONTROLLERS)
    assert up_plan(setup, controller='none').nodes == up_plan(setup).nodes
    for options in ({'controller': 'avoider'}, {'explorer': True},
                    {'switch_after_updates': 4}):
        with pytest.raises(ValueError, match=f'{setup} starts no controller'):
            up_plan(setup, **options)


@pytest.mark.parametrize('setup', sorted(bringup.SETUPS))
def test_never_two_controllers(setup):
    options = [{}, {'controller': 'avoider'}, {'controller': 'explorer'},
               {'explorer': True}, {'switch_after_updates': 3}, {'controller': 'none'}]
    for option in options:
        try:
            nodes = up_plan(setup, **option).nodes
        except ValueError:
            continue  # replay: no controller at all
        assert len(set(nodes) & set(bringup.CONTROLLERS)) <= 1, (option, nodes)
        assert len(nodes) == len(set(nodes))
        if setup == 'sim':  # a fleet: one controller per robot, none outside them
            plan = up_plan(setup, robots=3, **option)
            for namespace in {e.namespace for e in plan.entries}:
                here = [e.name for e in plan.entries if e.namespace == namespace]
                assert len(set(here) & set(bringup.CONTROLLERS)) <= 1, (option, here)
                assert len(here) == len(set(here))


# ------------------------------------------------------------------ trainer and predictor
@pytest.mark.parametrize('setup', ['thymio', 'sim', 'gazebo', 'replay'])
def test_every_robot_setup_predicts_and_trains_unless_told(setup, monkeypatch):
    assert {'labeler', 'predictor', 'trainer'} <= set(_launched(setup, monkeypatch))
    for values in ({'trainer': 'false'}, {'learner': 'false'},
                   {'trainer': 'false', 'learner': 'false'}):
        launched = _launched(setup, monkeypatch, **values)
        assert 'trainer' not in launched and {'labeler', 'predictor'} <= set(launched)
    assert 'trainer' in _launched(setup, monkeypatch, learner='true')
    assert 'learner' not in _launched(setup, monkeypatch)  # the old combined node


def test_options_reach_the_trainer_and_the_predictor(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    plan = up_plan('thymio', checkpoint='~/t.pt', model_file='~/m.pt',
                   camera_transport='compressed', device='cuda')
    assert plan.node('trainer').overrides == {'checkpoint_path': str(tmp_path / 't.pt'),
                                              'device': 'cuda'}
    assert plan.node('predictor').overrides == {'model_file': str(tmp_path / 'm.pt'),
                                                'camera_transport': 'compressed'}
    assert plan.node('labeler').overrides == {'camera_transport': 'compressed'}
    # sim time: every node of sim but the simulator, the trainer too
    plan = up_plan('sim')
    assert all(e.overrides.get('use_sim_time') is True for e in plan.entries
               if e.name != 'simulator')
    assert 'use_sim_time' not in plan.node('simulator').overrides


def test_sim_robots_3_plans_three_robots_one_trainer_and_one_simulator(monkeypatch):
    _, launched = launch_plan(LAUNCH_DIR / 'sim.launch.py', monkeypatch, robots='3',
                              seed='5')
    plan = up_plan('sim', robots=3, seed=5)
    robots = ['robot1', 'robot2', 'robot3']
    assert plan.robots == robots
    assert _where(_ours(launched)) == sorted(
        [(r, n) for r in robots for n in ('labeler', 'predictor', 'explorer')]
        + [('', 'trainer'), ('', 'simulator')])
    trainer = plan.node('trainer')
    assert trainer.namespace == '' and trainer.overrides['robots'] == robots
    simulator = plan.node('simulator')
    assert simulator.overrides['robots'] == robots
    assert simulator.overrides['worlds'] == ['boxes', 'pillars', 'walls']  # sim.yaml's first
    assert simulator.overrides['seed'] == 5  # robot i: 5 + i, the simulator's rule
    assert [plan.node('explorer', r).overrides['seed'] for r in robots] == [5, 6, 7]
    assert plan.nodes[-1] == 'simulator'  # the clock last
    # the simulator really takes them: one world per robot, robot i seeded seed + i
    context = Context()
    rclpy.init(context=context)
    try:
        from rclpy.parameter import Parameter
        node = node_factory('simulator')(context=context, parameter_overrides=[
            Parameter(k, value=v) for k, v in simulator.overrides.items()])
        try:
            assert node.namespaces == ['/robot1', '/robot2', '/robot3']
            assert [r.world_name for r in node._robots] == ['boxes', 'pillars', 'walls']
            assert [r.seed for r in node._robots] == [5, 6, 7]
        finally:
            node.close()
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_a_fleet_in_a_namespace_and_its_worlds_after_the_setups_world():
    plan = up_plan('sim', robots=5, namespace='lab', world='walls')
    robots = [f'lab/robot{i}' for i in range(1, 6)]
    assert plan.robots == robots
    assert plan.node('trainer').namespace == 'lab'
    assert plan.node('trainer').overrides['robots'] == robots
    assert plan.node('simulator').overrides['worlds'] == ['walls', 'boxes', 'pillars',
                                                          'random', 'boxes']
    assert {e.namespace for e in plan.entries if e.name == 'labeler'} == set(robots)
    # one robot: no fleet, today's topics in the namespace
    plan = up_plan('sim', robots=1, namespace='lab')
    assert plan.robots == [] and {e.namespace for e in plan.entries} == {'lab'}
    assert 'robots' not in plan.node('simulator').overrides
    assert 'robots' not in plan.node('trainer').overrides


@pytest.mark.parametrize(('text', 'robots'), [
    ('[thymio1,thymio2]', ['thymio1', 'thymio2']),
    ('thymio1,thymio2', ['thymio1', 'thymio2']),
    ("['thymio1', '/thymio2/']", ['thymio1', 'thymio2']),
    ('thymio10', ['thymio10']),
    ('lab/thymio1, lab/thymio2', ['lab/thymio1', 'lab/thymio2']),
    ('', []),
    ('[]', []),
])
def test_trainer_launch_file_reads_robots_as_a_list_or_comma_separated(
        text, robots, monkeypatch):
    declared, launched = launch_plan(LAUNCH_DIR / 'trainer.launch.py', monkeypatch,
                                     robots=text)
    assert declared['use_sim_time'] == 'false'
    assert declared['params'].endswith('config/thymio.yaml')  # the robots' file
    (trainer,) = _ours(launched)
    assert trainer['executable'] == 'trainer'
    assert trainer['files'] == ['labeler.yaml', 'thymio.yaml']
    assert trainer['overrides'] == ({'robots': robots} if robots else {})  # wall time
    assert up_plan('trainer', robots=text).node('trainer').overrides == trainer['overrides']


def test_trainer_launch_file_follows_clock_when_asked(monkeypatch):
    _, launched = launch_plan(LAUNCH_DIR / 'trainer.launch.py', monkeypatch,
                              robots='[robot1,robot2]', use_sim_time='true')
    (trainer,) = _ours(launched)
    assert trainer['overrides'] == {'robots': ['robot1', 'robot2'], 'use_sim_time': True}
    assert up_plan('trainer', robots='robot1,robot2', use_sim_time=True).node(
        'trainer').overrides == trainer['overrides']


@pytest.mark.parametrize(('setup', 'values', 'message'), [
    ('trainer', {'robots': '[thymio1,thymio1]'}, 'thymio1 is listed twice'),
    ('trainer', {'robots': '3'}, "'3' is not a namespace"),
    ('trainer', {'robots': 'thy-mio'}, 'is not a namespace'),
    ('sim', {'robots': '0'}, 'robots must be 1 or more'),
    ('sim', {'robots': 'robot1,robot2'}, 'robots must be a whole number'),
    ('thymio', {'robots': '2'}, 'robots applies to sim'),
    ('thymio', {'use_sim_time': 'true'}, 'use_sim_time applies to the trainer setup only'),
    ('trainer', {'trainer': 'false'}, 'the trainer setup is the trainer alone'),
])
def test_robots_and_clock_options_that_do_not_fit_are_errors(setup, values, message):
    with pytest.raises(ValueError, match=message):
        bringup.plan_from_launch_arguments(setup, values)
    with pytest.raises(ValueError, match=message):
        up_plan(setup, **{k: _option(k, v) for k, v in values.items()})


def test_up_runs_the_trainer_apart_unless_it_is_alone():
    plan = up_plan('sim', robots=2)
    assert [e.path for e in up.separate_entries(plan)] == ['/trainer']
    assert up.separate_entries(up_plan('trainer')) == []  # nothing to keep apart from
    assert up.separate_entries(up_plan('thymio', trainer=False)) == []


def _imports(path: pathlib.Path) -> set[str]:
    """
    Return the modules a source file imports, at the top or inside functions.

    Names are absolute (``ssl_obstacle.commands.up``); ``from X import name`` counts as
    importing ``X`` and, when it is one, the module ``X.name``.
    """
    import ast

    source = PACKAGE_DIR / 'ssl_obstacle'
    parts = list(path.relative_to(PACKAGE_DIR).with_suffix('').parts)
    package = parts if parts[-1] == '__init__' else parts[:-1]
    package = [part for part in package if part != '__init__']
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = '.'.join(base + ([node.module] if node.module else []))
            names.add(module)
            for alias in node.names:
                target = source.parent.joinpath(*f'{module}.{alias.name}'.split('.'))
                if target.with_suffix('.py').is_file() or target.is_dir():
                    names.add(f'{module}.{alias.name}')
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_bringup_and_cli_import_no_cycle():
    """
    The launch files' library, the commands and the command line import downwards only.

    bringup.py (what the launch files and ``up`` start) imports no command and not the
    command line; nodes/node_runner.py (running nodes, the trainer as a child process)
    imports neither the bringup nor a command; commands/up.py uses both and no command line;
    no module outside commands/ imports one (but cli.py, which wires them), and no module
    imports cli.py (but ``__main__``). core/ (the method) imports nothing of ROS and nothing of
    the package but core/.
    """
    source = PACKAGE_DIR / 'ssl_obstacle'
    commands = {'ssl_obstacle.commands'} | {f'ssl_obstacle.commands.{path.stem}'
                                            for path in (source / 'commands').glob('*.py')}
    cli = {'ssl_obstacle.cli'}
    assert not (cli | commands) & _imports(source / 'bringup.py')
    assert not (cli | commands | {'ssl_obstacle.bringup'}) & _imports(
        source / 'nodes' / 'node_runner.py')
    up_imports = _imports(source / 'commands' / 'up.py')
    assert {'ssl_obstacle.bringup', 'ssl_obstacle.nodes.node_runner'} <= up_imports
    assert 'ssl_obstacle.nodes.node_runner' in _imports(source / 'cli.py')
    assert 'ssl_obstacle.commands.up' in _imports(source / 'cli.py')
    for path in sorted(source.rglob('*.py')):
        imported = _imports(path)
        if path.name not in ('cli.py', '__main__.py'):
            assert not cli & imported, f'{path.relative_to(source)} imports the command line'
        if path.parent.name != 'commands' and path.name != 'cli.py':
            assert not commands & imported, f'{path.relative_to(source)} imports a command'
    for path in sorted((PACKAGE_DIR / 'launch').glob('*.launch.py')):
        assert not (cli | commands) & _imports(path), path.name
    for path in sorted((source / 'core').glob('*.py')):
        for name in _imports(path):
            top = name.split('.')[0]
            assert top not in ('rclpy', 'launch', 'launch_ros') and not top.endswith('_msgs'), \
                f'core/{path.name} imports {name}'
            assert top != 'ssl_obstacle' or name.startswith('ssl_obstacle.core'), \
                f'core/{path.name} imports {name}'


def test_setup_installs_every_launch_and_config_file():
    source = (PACKAGE_DIR / 'setup.py').read_text()
    assert "glob('launch/*.launch.py')" in source and "glob('config/*.yaml')" in source
    install = pathlib.Path(os.environ.get('SSL_INSTALL', PACKAGE_DIR.parent / 'install'))
    installed = install / 'ssl_obstacle' / 'share' / 'ssl_obstacle'
    if installed.is_dir():  # a colcon install space of this tree (ros2 launch reads it)
        for folder, pattern in (('launch', '*.launch.py'), ('config', '*.yaml')):
            for path in sorted((PACKAGE_DIR / folder).glob(pattern)):
                assert (installed / folder / path.name).is_file(), \
                    f'{folder}/{path.name} is not installed: run make setup'


@pytest.mark.parametrize('options', [
    {'setup': 'thymio', 'namespace': 'thymio10'},
    {'setup': 'thymio'},
    {'setup': 'sim', 'robots': 3},
    {'setup': 'sim', 'robots': 2, 'namespace': 'lab'},
    {'setup': 'replay', 'namespace': 'thymio10'},
])
def test_the_remote_trainer_command_trains_what_the_local_trainer_would(options):
    options = dict(options)
    setup = options.pop('setup')
    local = up_plan(setup, **options).node('trainer')
    command = up.remote_trainer_command(up_plan(setup, trainer=False, **options))
    words = command.split()
    assert words[:3] == ['ssl-obstacle', 'up', 'trainer']
    parser = argparse.ArgumentParser()
    up.add_arguments(parser)
    remote = bringup.make_plan(parser.parse_args(words[2:]))
    (trainer,) = remote.entries
    assert trainer.name == 'trainer'
    assert [p.name for p in remote.param_files] == [bringup.BASE_CONFIG,
                                                    bringup.SETUPS[setup].config]
    # the same robots and clock: in the robot's namespace, or for robots that name it
    assert trainer.overrides.get('use_sim_time') == local.overrides.get('use_sim_time')
    robots = local.overrides.get('robots') or ([local.namespace] if local.namespace else [])
    assert trainer.overrides.get('robots', []) == robots
