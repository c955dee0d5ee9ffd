"""A fleet over real DDS: three labelers feed one trainer whose model reaches three predictors."""

from __future__ import annotations

import signal
import threading

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_harness import ros_context, spinning, wait_for, wait_for_subscribers
from ssl_obstacle.core.params import LabelParams
from ssl_obstacle.nodes.labeler_node import LabelerNode
from ssl_obstacle.nodes.predictor_node import PredictorNode
from ssl_obstacle_msgs.msg import LearnerStatus, ObstaclePrediction
from test_labeler_node import reliable_inputs, run_messages, StreamPlayer
from test_trainer_crash import start_trainer
from test_trainer_node import camera_frame, HEIGHT, predicted, stop, synthetic_frame, WIDTH

ROBOTS = ('r1', 'r2', 'r3')


class Watcher(Node):
    """Watches one robot's predictions and its status from the fleet's trainer (or pooled)."""

    def __init__(self, context, robot: str) -> None:
        super().__init__('fleet_watcher', context=context, namespace=robot)
        self.predictions: list[ObstaclePrediction] = []
        self.status: list[LearnerStatus] = []
        self.create_subscription(ObstaclePrediction, 'ssl/predictions', self.predictions.append,
                                 100)
        self.create_subscription(LearnerStatus, 'ssl/learner_status', self.status.append, 50)

    def labeled_frames(self) -> int:
        return self.status[-1].labeled_frames if self.status else -1


#: This test counts frames rather than comparing labels, so stream order matters less than
#: in test_labeler_node.py; a 3 s window publishes most of each 12 s run before its end.
PARAMS = LabelParams(reorder_window=3.0, time_jump_threshold=8.0)


def labeler(context, robot: str) -> LabelerNode:
    return LabelerNode(context=context, namespace=robot, parameter_overrides=[
        Parameter('image_width', value=WIDTH), Parameter('image_height', value=HEIGHT),
        Parameter('reorder_window', value=PARAMS.reorder_window),
        Parameter('time_jump_threshold', value=PARAMS.time_jump_threshold),
        Parameter('sensor_qos_depth', value=500), Parameter('camera_qos_depth', value=500),
        Parameter('queue_size', value=20000), Parameter('camera_queue_size', value=20000),
        Parameter('status_period', value=0.5), *reliable_inputs(robot)])


def test_three_labelers_feed_one_trainer_whose_model_reaches_three_predictors(tmp_path):
    """
    The trainer runs in a process of its own, as on the fleet's workstation.

    In this process, beside a dozen nodes and a loaded CPU, its executor fell seconds behind
    and its reader's history (LABELED_FRAMES_QOS, depth 100) lost a few labeled frames.
    """
    runs = {robot: run_messages(10.0, seed=3 + index) for index, robot in enumerate(ROBOTS)}
    log = tmp_path / 'trainer.log'
    trainer = start_trainer(log, namespace='/', robots=list(ROBOTS), min_buffer=16)
    try:
        with ros_context() as context:
            labelers = {robot: labeler(context, robot) for robot in ROBOTS}
            quiet = [Parameter('publish_overlay', value=False),
                     Parameter('publish_markers', value=False)]
            predictors = {robot: PredictorNode(context=context, namespace=robot,
                                               parameter_overrides=quiet) for robot in ROBOTS}
            players = {robot: StreamPlayer(context, namespace=robot) for robot in ROBOTS}
            watchers = {robot: Watcher(context, robot) for robot in ('', *ROBOTS)}
            nodes = [*labelers.values(), *predictors.values(), *players.values(),
                     *watchers.values()]
            try:
                with spinning(context, *nodes):
                    for robot in ROBOTS:
                        wait_for_subscribers(list(players[robot].pubs.values()),
                                             node=labelers[robot], settle=0.0)
                        # The labeler's frames reach the trainer and the player (reliable).
                        wait_for_subscribers([labelers[robot]._publisher], count=2,
                                             timeout=120.0, settle=0.0)
                    assert wait_for(lambda: all(watchers[r].status for r in ROBOTS), 60.0), \
                        log.read_text()
                    threads = [threading.Thread(target=players[robot].play, args=(runs[robot],))
                               for robot in ROBOTS]
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join(120.0)

                    # Each robot's /<ns>/ssl/learner_status counts that robot's frames.
                    assert wait_for(lambda: all(
                        len(players[r].frames) > 50
                        and watchers[r].labeled_frames() == len(players[r].frames)
                        for r in ROBOTS), 60.0), \
                        {r: (len(players[r].frames), watchers[r].labeled_frames())
                         for r in ROBOTS}
                    for robot in ROBOTS:
                        assert watchers[robot].status[-1].robot == f'/{robot}'
                    assert wait_for(lambda: watchers[''].labeled_frames() == sum(
                        len(players[r].frames) for r in ROBOTS), 30.0)
                    assert watchers[''].status[-1].robot == ''

                    # One model, trained on all three, reaches every robot's predictor...
                    assert wait_for(lambda: all(p.model_updates > 0
                                                for p in predictors.values()), 60.0)
                    for robot in ROBOTS:
                        assert 'the model of /trainer@' in predictors[robot].model_source
                    # ...and each predicts with it in its own namespace.
                    for index, robot in enumerate(ROBOTS):
                        image = synthetic_frame(np.random.default_rng(index), 0).payload
                        msg = camera_frame(image, 100_000_000_000 + index)
                        prediction = predicted(watchers[robot],
                                               players[robot].pubs['camera/image_raw'], msg)
                        assert prediction.model_updates > 0
            finally:
                stop(*nodes)
        trainer.send_signal(signal.SIGINT)
        assert trainer.wait(60.0) == 0, log.read_text()
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait(10.0)
