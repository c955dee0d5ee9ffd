"""
The state-consistency loss (core/state_consistency.py) and the trainer's use of it.

A hand-made pair of frames: which cells the two predictions share, the loss value computed
by hand, where its gradient goes; pairing by odometry (ahead, lateral, turned, other
robot, too far apart in time); and the trainer pairing buffered frames of a straight drive.
"""

import math

import numpy as np
import pytest
from ssl_obstacle.core.model import ModelConfig
from ssl_obstacle.core.state_consistency import consistency_loss, find_partners, \
    PairTolerance
from ssl_obstacle.core.trainer import OnlineTrainer, TrainerSettings
import torch

DISTANCES = np.round(np.arange(0, 0.31, 0.01), 2)


def logit(p: float) -> float:
    """Return the logit of probability p."""
    return math.log(p / (1.0 - p))


def test_loss_of_a_hand_made_pair():
    # One sensor, four distances; the partner is 2 steps ahead: the anchor's cells d = 2, 3
    # are the partner's d = 0, 1.
    anchor = torch.tensor([[[logit(0.1), logit(0.2), logit(0.9), logit(0.4)]]],
                          requires_grad=True)
    partner = torch.tensor([[[logit(0.5), logit(0.6), logit(0.7), logit(0.8)]]],
                           requires_grad=True)
    loss = consistency_loss(anchor, partner, np.array([2]))
    expected = ((0.9 - 0.5) ** 2 + (0.4 - 0.6) ** 2) / 2
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # Only the shared cells receive a gradient, on both sides of the pair.
    assert (anchor.grad[0, 0, :2] == 0).all() and (anchor.grad[0, 0, 2:] != 0).all()
    assert (partner.grad[0, 0, 2:] == 0).all() and (partner.grad[0, 0, :2] != 0).all()
    # d/dz (p - q)^2 / 2 at the anchor's d = 2: (p - q) p (1 - p) with p = 0.9, q = 0.5.
    assert float(anchor.grad[0, 0, 2]) == pytest.approx((0.9 - 0.5) * 0.9 * 0.1, rel=1e-5)


def test_agreeing_predictions_cost_nothing_and_no_pair_is_zero():
    probabilities = torch.rand(3, 5, 31) * 0.98 + 0.01
    logits = torch.log(probabilities / (1 - probabilities))
    shifted = logits.clone()
    shifted[:, :, :-4] = logits[:, :, 4:]  # the partner 4 steps ahead sees the same states
    assert float(consistency_loss(logits, shifted, np.array([4, 4, 4]))) == \
        pytest.approx(0.0, abs=1e-10)
    empty = torch.zeros(0, 5, 31, requires_grad=True)
    loss = consistency_loss(empty, empty, np.array([], np.int64))
    assert float(loss.detach()) == 0.0
    loss.backward()  # a graph, so callers may always call backward()


def test_partners_are_frames_straight_ahead_of_the_same_robot():
    yaw = 0.7
    ahead = np.array([math.cos(yaw), math.sin(yaw)])
    left = np.array([-math.sin(yaw), math.cos(yaw)])
    origin = np.array([1.0, 2.0])

    def pose(forward, lateral=0.0, turn=0.0):
        x, y = origin + forward * ahead + lateral * left
        return (x, y, yaw + turn)

    poses = np.array([pose(0.0), pose(0.05), pose(0.05, lateral=0.02), pose(0.05, turn=0.1),
                      pose(0.403), pose(0.033), pose(0.12), pose(-0.05), pose(0.08)])
    sources = np.array([0, 0, 0, 0, 0, 0, 1, 0, 0])
    stamps = np.array([0, 1, 1, 1, 1, 1, 1, 1, 11]) * 10 ** 9 + 1
    rng = np.random.default_rng(0)
    which, partners, shifts = find_partners(np.array([0]), poses, sources, stamps,
                                            np.arange(len(poses)), DISTANCES, rng)
    # Frame 1 (5 cm ahead) and frame 5 (3.3 cm: within 0.5 cm of 3 steps) fit; 2 is off to
    # the side, 3 turned, 4 beyond the grid, 6 another robot's, 7 behind, 8 11 s later.
    seen = set()
    for _ in range(50):
        which, partners, shifts = find_partners(np.array([0]), poses, sources, stamps,
                                                np.arange(len(poses)), DISTANCES, rng)
        assert list(which) == [0]
        seen.add((int(partners[0]), int(shifts[0])))
    assert seen == {(1, 5), (5, 3)}
    strict = PairTolerance(tol_x=0.001)
    which, partners, shifts = find_partners(np.array([0, 7]), poses, sources, stamps,
                                            np.arange(len(poses)), DISTANCES, rng, strict)
    # With 1 mm along the heading only frame 1 fits frame 0; frame 7 has frames ahead too.
    assert list(which[:1]) == [0] and int(partners[0]) == 1 and int(shifts[0]) == 5


def test_trainer_pairs_frames_of_a_straight_drive_and_trains():
    config = ModelConfig(image_height=16, image_width=16, filters=(4, 4), dense=8)
    settings = TrainerSettings(batch_size=16, min_buffer=8, consistency_weight=1.0,
                               consistency_share=0.25, seed=1)
    trainer = OnlineTrainer(config, settings)
    rng = np.random.default_rng(0)
    count = 40
    images = rng.integers(0, 255, (count, 16, 16, 3), dtype=np.uint8)
    labels = np.full((count, 5, 31), np.nan, np.float32)
    labels[:, :, 0] = 0.0
    poses = np.stack([np.arange(count) * 0.01, np.zeros(count), np.zeros(count)], axis=1)
    trainer.score_and_store(images, labels, list(range(count)), poses=poses)
    batch, batch_labels, slots = trainer.buffer.sample(16, trainer._rng)
    which, rows, shifts = trainer._add_partners(batch, batch_labels, slots)
    assert len(which) == 4 and list(rows) == [12, 13, 14, 15]
    # Each partner row now holds the frame `shift` steps ahead of its anchor.
    for anchor, row, shift in zip(which, rows, shifts):
        assert 1 <= shift <= 30
        partner = int(slots[anchor]) + int(shift)  # 1 cm apart, nothing evicted
        np.testing.assert_array_equal(batch[row], images[partner])
    losses = [trainer.train_step() for _ in range(5)]
    assert all(np.isfinite(losses))
