"""
``ssl-obstacle up``: the launch files' setups, for people without ``ros2 launch``.

What a setup starts, with which parameter files, overrides and remaps, is decided in
:mod:`ssl_obstacle.bringup`, which the launch files call too, so a robot brought up either
way runs one configuration. This module is the command: its options, its first lines, and
the processes. ``up`` runs every node of the setup in this process but the trainer (when
there are others), which it runs in a child process of its own, as ``ros2 launch`` runs
every node, so that prediction never shares an interpreter with training (see :func:`run`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from ..bringup import (config_path, CONTROLLER_CHOICES, FLEET_SHARED, make_plan, Plan,
                       PlannedNode, ros_arguments, SEPARATE_PROCESS, SETUPS, TRAINER)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``ssl-obstacle up`` (the launch files' arguments)."""
    parser.add_argument('setup', choices=sorted(SETUPS),
                        help='; '.join(f'{s.name}: {s.summary}' for s in SETUPS.values()))
    parser.add_argument('--params', help='parameter file replacing config/<setup>.yaml '
                                         '(config/labeler.yaml is still loaded before it)')
    parser.add_argument('--namespace', default='', help="the robot's namespace, e.g. thymio10")
    parser.add_argument('--trainer', action=argparse.BooleanOptionalAction, default=None,
                        help='run the trainer here, in a process of its own (--no-trainer: '
                             'it runs on another machine); default: yes')
    parser.add_argument('--learner', action=argparse.BooleanOptionalAction, default=None,
                        help='old name of --trainer')
    parser.add_argument('--controller', choices=CONTROLLER_CHOICES,
                        help='what drives the robot: the explorer (IR only), the avoider (by '
                             'sight, the learned predictions) or none; default: explorer, '
                             'thymio: none; replay and trainer have no controller')
    parser.add_argument('--switch-after-updates', type=int, metavar='N',
                        help='N > 0: start the avoider, which explores until the trainer has '
                             'made N updates (and reached its switch_min_auc), then drives '
                             'by sight; needs the trainer; default: as in the parameter file')
    parser.add_argument('--explorer', action=argparse.BooleanOptionalAction, default=None,
                        help='old spelling of --controller explorer (--no-explorer: none)')
    parser.add_argument('--camera-topic', default='',
                        help='camera image topic if not camera/image_raw (raw topic name; '
                             'compressed transport appends /compressed)')
    parser.add_argument('--camera-transport', choices=('raw', 'compressed'),
                        help="the labeler's and the predictor's; default: as in the parameter "
                             'file')
    parser.add_argument('--proximity-source', choices=('range', 'laser'),
                        help='proximity/<name> Range topics or proximity/laser; default: as in '
                             'the parameter file')
    parser.add_argument('--checkpoint', help="the trainer's checkpoint file (default: as in the "
                                             'parameter file)')
    parser.add_argument('--model-file', help='a checkpoint the predictor predicts with from '
                                             'the start, until the first model of the trainer '
                                             '(default: as in the parameter file)')
    parser.add_argument('--device', help="the trainer's device: cpu or cuda (default: as in "
                                         'the parameter file)')
    parser.add_argument('--robots', metavar='N|NAMES',
                        help='sim: N simulated robots, robot1..robotN (under --namespace if '
                             'given), each with its own labeler, predictor and controller, '
                             'one trainer for all '
                             '(default 1: one robot in --namespace); trainer: the namespaces '
                             'to learn from, e.g. thymio1,thymio2 (default: --namespace)')
    parser.add_argument('--use-sim-time', action='store_true', default=None,
                        help='trainer only: follow /clock (a simulated fleet on another '
                             'machine); the other setups decide their clock themselves')
    sim = parser.add_argument_group('sim only')
    sim.add_argument('--world', help='boxes, pillars, walls or random (a fleet: the first '
                                     "robot's)")
    sim.add_argument('--seed', type=int)
    sim.add_argument('--real-time-factor', type=float,
                     help='simulated seconds per second; 0 = as fast as possible')


def separate_entries(plan: Plan) -> list[PlannedNode]:
    """Return the nodes ``up`` runs in processes of their own: the trainer, unless alone."""
    if len(plan.entries) == 1:
        return []
    return [entry for entry in plan.entries if entry.name in SEPARATE_PROCESS]


def describe(plan: Plan, separate: Sequence[PlannedNode] = ()) -> str:
    """Say what ``up`` starts where, for its first line."""
    here = [e for e in plan.entries if e not in separate]
    if plan.setup.robots == 'count' and plan.robots:
        per_robot = [e.name for e in here if e.namespace == plan.robots[0]]
        shared = [e.name for e in here if e.name in FLEET_SHARED]
        text = (f'robots {", ".join("/" + r for r in plan.robots)} (each: '
                f'{", ".join(per_robot)})' + (f', {", ".join(shared)}' if shared else '')
                + f' in namespace /{plan.namespace}')
    else:
        text = f'{", ".join(e.name for e in here)} in namespace /{plan.namespace}'
        if plan.robots:
            text += f' for robots {", ".join("/" + r for r in plan.robots)}'
    for entry in separate:
        text += f'; {entry.name} in a process of its own'
        if plan.robots:
            text += f' for robots {", ".join("/" + r for r in plan.robots)}'
    return text


def remote_trainer_command(plan: Plan) -> str:
    """
    Return the ``up`` command of a trainer for this plan's robots, for another machine.

    Its trainer learns from the robots this plan's trainer would (``robots``, or the
    robot's namespace), with the same parameter file and clock.
    """
    words = ['ssl-obstacle up trainer']
    robots = plan.robots or ([plan.namespace] if plan.namespace else [])
    if robots:
        words.append('--robots ' + ','.join(robots))
    if plan.param_files[-1] != config_path(SETUPS['trainer'].config):
        words.append(f'--params {plan.param_files[-1]}')
    if plan.setup.sim_time:
        words.append('--use-sim-time')
    return ' '.join(words)


def _death_notice(child: Any, code: int, plan: Plan) -> str:
    """Say that the trainer died, what goes on without it and what to do."""
    text = (f'error: {child.describe_exit(code)}; the other nodes keep running (each '
            'predictor keeps the last model it received; nothing learns any more) until '
            'Ctrl-C, and up then exits with code 1.')
    if code > 0:
        text += (' Its messages are above; on a computer without PyTorch, start this setup '
                 'with --no-trainer and the trainer on another machine: '
                 + remote_trainer_command(plan))
    return text


def run(args: argparse.Namespace, extra: Sequence[str] = ()) -> int:
    """
    Start the setup's nodes until Ctrl-C; return the exit code.

    Every node runs in this process but the trainer (when there are others): it runs in a
    child process (``python -m ssl_obstacle.nodes.trainer_node``) with the same parameter
    files, remaps and ``--ros-args``, its namespace as ``-r __ns:=``, its overrides in a
    parameter file loaded last, and this process's environment (the DDS domain and
    discovery range, inherited as they are). On Ctrl-C or SIGTERM the
    nodes here close, then up sends the trainer SIGINT once and waits for it to write its
    last checkpoint (a second Ctrl-C kills it). If the trainer dies first, up says so at
    once (exit code or signal), the other nodes keep running (the robot keeps its
    perception and controller), and up exits with code 1 when stopped.
    """
    from ..nodes.node_runner import NodeProcess, NodeSpec, run_nodes

    try:
        plan = make_plan(args)
    except ValueError as error:
        raise SystemExit(f'error: {error}') from None
    separate = separate_entries(plan)
    print(f'ssl-obstacle up {plan.setup.name}: {describe(plan, separate)}; parameters '
          f'{" then ".join(map(str, plan.param_files))}', file=sys.stderr, flush=True)
    if TRAINER in dict(plan.setup.optional) and TRAINER not in plan.nodes:
        print('ssl-obstacle up: no trainer here; on a machine with PyTorch in this ROS '
              f'domain: {remote_trainer_command(plan)}', file=sys.stderr, flush=True)
    ros_args = ros_arguments(plan, extra)
    children: list[Any] = []
    code = 1
    try:
        for entry in separate:
            child = NodeProcess(
                NodeSpec(entry.name, entry.namespace, entry.overrides), ros_args,
                on_exit=lambda child, code: print(_death_notice(child, code, plan),
                                                  file=sys.stderr, flush=True))
            children.append(child)
            print(f'ssl-obstacle up: {entry.path} runs in process {child.pid}',
                  file=sys.stderr, flush=True)
        code = run_nodes([NodeSpec(e.name, e.namespace, e.overrides) for e in plan.entries
                          if e not in separate], ros_args)
    finally:
        for child in children:
            died = child.unexpected_exit is not None
            returned = child.stop()
            if died:
                print(f'ssl-obstacle up: exit code 1: {child.describe_exit(returned)} '
                      'while the other nodes ran', file=sys.stderr, flush=True)
                code = code or 1
            elif returned != 0:
                print(f'error: {child.describe_exit(returned)} while stopping', file=sys.stderr,
                      flush=True)
                code = code or 1
    return code
