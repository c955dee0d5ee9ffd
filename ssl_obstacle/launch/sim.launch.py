"""
Learn in the built-in simulated world: simulator, explorer, labeler, predictor and trainer.

The simulator makes the time (/clock); every other node follows it (use_sim_time).
robots:=N (N > 1) simulates a fleet: the simulator hosts robot1 .. robotN (under
/<namespace>/ when namespace:= is given), each in a world of its own (world:= first, then
the other layouts; robot i has seed seed + i), each with its own labeler, predictor and
controller in its namespace, and one trainer learns from all of them (its robots
parameter lists them) and publishes the model to each.

    ros2 launch ssl_obstacle sim.launch.py
    ros2 launch ssl_obstacle sim.launch.py world:=pillars seed:=3 real_time_factor:=0
    ros2 launch ssl_obstacle sim.launch.py namespace:=thymio10
    ros2 launch ssl_obstacle sim.launch.py switch_after_updates:=300   # explore, then by sight
    ros2 launch ssl_obstacle sim.launch.py robots:=3                   # /robot1 .. /robot3

controller:=explorer|avoider|none picks what drives the robot (the IR-only explorer, the
avoider that drives by the learned predictions, or nothing; default explorer);
switch_after_updates:=N (N > 0) starts the avoider, which explores until the trainer has
made N updates with a good enough AUC and then drives by sight (it needs the trainer, and
contradicts controller:=explorer). The older explorer:=true|false still works: true is
controller:=explorer, false is controller:=none. trainer:=false leaves the trainer to
another machine; learner:= is its old name.

`ssl-obstacle up sim` starts the same nodes with the same files and options.
"""

import os

from ament_index_python.packages import get_package_share_directory
from ssl_obstacle.bringup import launch_description

SHARE = get_package_share_directory('ssl_obstacle')

ARGUMENTS = [
    ('namespace', '', 'namespace of the simulated robot, e.g. thymio10'),
    ('params', os.path.join(SHARE, 'config', 'sim.yaml'),
     'parameter file refining config/labeler.yaml'),
    ('trainer', '', "run the trainer (true or false: it runs on another machine); '' = true"),
    ('learner', '', 'old name of trainer'),
    ('controller', '', "explorer, avoider or none; '' = explorer"),
    ('switch_after_updates', '', 'N > 0: the avoider explores until the trainer has made N '
                                 "updates, then drives by sight; '' = as in the parameter file"),
    ('explorer', '', 'old spelling: true = controller:=explorer, false = controller:=none'),
    ('world', '', "boxes, pillars, walls or random; '' = as in the parameter file"),
    ('seed', '', "seed of the world and the explorer (or avoider); '' = as in the parameter file"),
    ('real_time_factor', '', 'simulated seconds per second, 0 = as fast as possible; '
                             "'' = as in the parameter file"),
    ('robots', '1', 'how many simulated robots: N > 1 = robot1..robotN, each with its own '
                    'labeler, predictor and controller, one trainer for all'),
    ('checkpoint', '', "the trainer's checkpoint file; '' = as in the parameter file"),
    ('model_file', '', 'a checkpoint the predictor predicts with from the start, until the '
                       "trainer's first model; '' = as in the parameter file"),
]


def generate_launch_description():
    return launch_description('sim', ARGUMENTS)
