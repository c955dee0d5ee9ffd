"""
Label smoothing in the online trainer: what a model learns with it, and what is refused.

The state-consistency loss measured beside it was not kept (docs/learning_quality.md).
"""

import numpy as np
import pytest
from ssl_obstacle.core.model import ModelConfig
from ssl_obstacle.core.trainer import OnlineTrainer, TrainerSettings


@pytest.mark.parametrize('smoothing, low, high', [(0.0, 0.0, 0.02), (0.2, 0.08, 0.12)])
def test_label_smoothing_trains_towards_the_smoothed_target(smoothing, low, high):
    """Free cells (label 0) are learned as ε / 2 with smoothing ε: 0.1 at 0.2, ~0 without."""
    config = ModelConfig(image_height=16, image_width=16, filters=(4, 4), dense=8)
    settings = TrainerSettings(batch_size=16, min_buffer=8, augment=False, average_decay=0.0,
                               learning_rate=0.05, label_smoothing=smoothing, seed=2)
    trainer = OnlineTrainer(config, settings)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 255, (16, 16, 16, 3), dtype=np.uint8)
    trainer.score_and_store(images, np.zeros((16, 5, 31), np.float32), list(range(16)))
    trainer.train_steps(400)
    trainer.publish()
    mean = float(trainer.predict(images).mean())
    assert low <= mean <= high, mean


@pytest.mark.parametrize('smoothing', [1.0, -0.1])
def test_a_meaningless_smoothing_is_refused(smoothing):
    with pytest.raises(ValueError, match='label_smoothing'):
        OnlineTrainer(ModelConfig(image_height=16, image_width=16, filters=(4, 4), dense=8),
                      TrainerSettings(label_smoothing=smoothing))
