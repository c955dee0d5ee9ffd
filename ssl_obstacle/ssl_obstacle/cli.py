"""
The ``ssl-obstacle`` command: everything a person without a full ROS install needs.

``run`` and ``sim`` are defined here; every other subcommand lives in a module of its own
in ``commands/`` and this file only wires it into argparse.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence


def _add_run(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'run', help='run one or several nodes in this process (like ros2 run)',
        description='Run nodes of this package with a ROS 2 parameter file, in one process. '
                    'Arguments after "--ros-args" go to ROS unchanged.')
    parser.add_argument('nodes', nargs='+', help='node names, e.g. labeler')
    parser.add_argument('--params', help='ROS 2 parameter YAML (e.g. config/labeler.yaml)')
    parser.add_argument('--namespace', default='', help='namespace of the nodes, e.g. thymio10')
    parser.add_argument('--use-sim-time', action='store_true', help='follow /clock')
    parser.set_defaults(func=_run_nodes)


def _ros_arguments(args: argparse.Namespace, extra: Sequence[str]) -> list[str]:
    ros_args = ['--ros-args']
    if args.params:
        if not os.path.isfile(args.params):
            raise SystemExit(f'error: parameter file {args.params} does not exist')
        ros_args += ['--params-file', args.params]
    if args.namespace:
        ros_args += ['-r', f'__ns:=/{args.namespace.strip("/")}']
    if args.use_sim_time:
        ros_args += ['-p', 'use_sim_time:=true']
    extra = list(extra)
    if extra and extra[0] == '--ros-args':
        extra = extra[1:]
    return ros_args + extra


def _run_nodes(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from .nodes.node_runner import run_nodes

    return run_nodes(args.nodes, _ros_arguments(args, extra))


def _add_sim(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'sim', help='run the built-in simulated world and the explorer as ROS nodes',
        description='The simulator publishes a Thymio-like robot (camera, proximity, odom, '
                    'ground truth, /clock); the explorer drives it through cmd_vel.')
    parser.add_argument('--world', default='boxes', help='boxes, pillars, walls or random')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--real-time-factor', type=float, default=1.0,
                        help='simulated seconds per second; 0 = as fast as possible')
    parser.add_argument('--namespace', default='', help='robot namespace, e.g. thymio10')
    parser.add_argument('--params', help='ROS 2 parameter YAML for the nodes')
    parser.add_argument('--use-sim-time', action='store_true', help=argparse.SUPPRESS)
    parser.set_defaults(func=_run_sim)


def _run_sim(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from rclpy.parameter import Parameter

    from .nodes.node_runner import run_nodes

    args.use_sim_time = False  # the simulator makes the time; the explorer follows it
    overrides = {
        'simulator': [Parameter('world', value=args.world), Parameter('seed', value=args.seed),
                      Parameter('real_time_factor', value=float(args.real_time_factor))],
        'explorer': [Parameter('use_sim_time', value=True),
                     Parameter('seed', value=args.seed)],
    }
    return run_nodes(['simulator', 'explorer'], _ros_arguments(args, extra), overrides)


#: Subcommands that live in a module of their own with ``add_arguments`` and ``run``:
#: name → (module of commands/, help, description). Modules load on use: ``train`` and
#: ``evaluate`` pull in torch, which ``--help`` or ``sim`` should not wait for.
MODULE_COMMANDS: dict[str, tuple[str, str, str]] = {
    'demo': ('demo', 'watch the robot learn: simulator, explorer, labeler, trainer, predictor',
             'Run the simulated robot, the labeler, the trainer and the predictor over DDS, then '
             'evaluate the model on a held-out world; writes a run folder.'),
    'record': ('record', 'record a simulated run into a rosbag2, as fast as possible',
               'Run the simulator and the explorer without DDS, as fast as the CPU allows, '
               'and write every topic to a rosbag2 (mcap or sqlite3).'),
    'export': ('export', 'label a rosbag2 (sqlite3 or mcap) into an HDF5 dataset',
               'Read a rosbag2 directory, label its camera frames with the same core as the '
               'labeler node, and write the HDF5 dataset of docs/architecture.md.'),
    'replay': ('replay', 'publish a rosbag2 into live ROS 2 topics (like ros2 bag play)',
               'Publish every recorded message of a rosbag2 (sqlite3 or mcap) at its recorded '
               'time, scaled by --rate, with /clock, loop, namespace and remap options, for '
               'machines without rosbag2.'),
    'drive': ('drive', 'let the explorer or the learned model drive in the built-in world',
              'Drive the simulated robot with the IR-only explorer or with the avoider, which '
              "steers by a model's predictions, in-process and deterministic for a seed; "
              'writes report.json (near-hits, speed, collisions) and trajectory.png.'),
    'import-idsia': ('import_idsia', 'import the published dataset of Nava et al. 2019',
                     'Convert the real-robot HDF5 file of idsia-robotics/learning-long-range-'
                     'perception (bag{i}_x / bag{i}_y) into one dataset file of ours per '
                     'recording, for train and evaluate (with --protocol nava2019: the '
                     'split and scoring of the paper).'),
    'train': ('train', 'train the obstacle model offline on HDF5 datasets',
              'Train the network of the trainer node on exported datasets, with a '
              'validation split by file, and write the best model as a checkpoint.'),
    'evaluate': ('evaluate', 'score a model on HDF5 datasets: ROC AUC per sensor and distance',
                 'ROC AUC per (sensor, distance) on the known cells of the datasets, with '
                 'bootstrap confidence intervals; writes report.json and figures.'),
}


def _add_module_command(subparsers: argparse._SubParsersAction, name: str) -> None:
    module_name, help_text, description = MODULE_COMMANDS[name]
    module = importlib.import_module(f'{__package__}.commands.{module_name}')
    parser = subparsers.add_parser(name, help=help_text, description=description)
    module.add_arguments(parser)
    parser.set_defaults(func=lambda args, extra: module.run(args))


def _add_up(subparsers: argparse._SubParsersAction) -> None:
    from .commands import up

    parser = subparsers.add_parser(
        'up', help='bring up thymio, sim, gazebo, replay or trainer as the launch files do',
        description='Start the nodes of launch/<setup>.launch.py with the same parameter files '
                    '(config/labeler.yaml, then config/<setup>.yaml) and the same options: the '
                    'trainer in a child process of its own (as ros2 launch runs it), every '
                    'other node in this process. Arguments after "--ros-args" go to ROS '
                    'unchanged (to the trainer too).')
    up.add_arguments(parser)
    parser.set_defaults(func=up.run)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog='ssl-obstacle',
        description='Self-supervised long-range obstacle perception for ROS 2 robots.')
    subparsers = parser.add_subparsers(dest='command', required=True)
    _add_module_command(subparsers, 'demo')
    _add_up(subparsers)
    _add_run(subparsers)
    _add_sim(subparsers)
    for name in ('record', 'replay', 'export', 'import-idsia', 'train', 'evaluate', 'drive'):
        _add_module_command(subparsers, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the subcommand; return its exit code."""
    from .interrupts import interrupt_on_signals

    interrupt_on_signals()
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if '--ros-args' in argv:
        index = argv.index('--ros-args')
        argv, extra = argv[:index], argv[index:]
    args = build_parser().parse_args(argv)
    return int(args.func(args, extra) or 0)


if __name__ == '__main__':
    sys.exit(main())
