"""
Wheel odometry that drifts like a real robot's.

The odometry integrates *measured* wheel speeds, through the same exact-arc integration
as the true motion. Each wheel's measured speed is its true speed times ``1 + b + n`` plus
``a``, where

- ``b ~ N(0, bias)`` is drawn once per run: a calibration error (wheel diameters differ a
  little), which is what makes real odometry drift steadily in heading;
- ``n ~ N(0, relative_noise)`` and ``a ~ N(0, additive_noise)`` are drawn afresh every
  ``noise_interval`` seconds (the encoders' sampling interval) and held in between, so
  the drift does not depend on how finely the simulator steps its physics.

With all three stds 0 the measured speeds are the true ones bit for bit, so odometry
equals the true motion exactly (up to rounding, ~1e-12 after hours).

Frame: the ``odom`` frame is the robot's true start pose. Odometry starts at (0, 0, 0)
wherever the robot really starts, as on a real robot, and ``relative_pose(start,
true_pose)`` is what noise-free odometry reports. The wheels of a blocked robot are taken
as stalled (see :mod:`.robot`), so odometry measures only motion that happened.
"""

from __future__ import annotations

import numpy as np

from .robot import integrate, twist_from_wheels, WHEEL_BASE


class Odometry:
    """Dead reckoning from noisy wheel speeds, in the odom frame."""

    def __init__(self, rng: np.random.Generator | None = None, relative_noise: float = 0.02,
                 additive_noise: float = 0.0, bias: float = 0.0,
                 noise_interval: float = 0.05, wheel_base: float = WHEEL_BASE) -> None:
        """Draw noise from ``rng``; the noise parameters are stds (``additive_noise`` m/s)."""
        for name, value in (('relative_noise', relative_noise),
                            ('additive_noise', additive_noise), ('bias', bias)):
            if not (value >= 0.0 and np.isfinite(value)):
                raise ValueError(f'{name} must be a finite, non-negative std, got {value}')
        if not (noise_interval > 0.0 and np.isfinite(noise_interval)):
            raise ValueError(f'noise_interval must be positive, got {noise_interval}')
        self.rng = rng if rng is not None else np.random.default_rng()
        self.relative_noise = float(relative_noise)
        self.additive_noise = float(additive_noise)
        self.noise_interval = float(noise_interval)
        self.wheel_base = float(wheel_base)
        #: Per-run scale error of the (left, right) wheel.
        self.scale_error = (tuple(float(b) for b in self.rng.normal(0.0, bias, 2))
                            if bias > 0.0 else (0.0, 0.0))
        #: Pose (x, y, yaw) in the odom frame.
        self.pose = np.zeros(3)
        #: The last measured twist (linear, angular).
        self.twist = (0.0, 0.0)
        self._noisy = self.relative_noise > 0.0 or self.additive_noise > 0.0
        self._clock = 0.0
        self._next_draw = 0.0
        self._factor = (1.0 + self.scale_error[0], 1.0 + self.scale_error[1])
        self._offset = (0.0, 0.0)

    def _draw(self) -> None:
        factor = self.rng.normal(0.0, self.relative_noise, 2) if (
            self.relative_noise > 0.0) else np.zeros(2)
        offset = self.rng.normal(0.0, self.additive_noise, 2) if (
            self.additive_noise > 0.0) else np.zeros(2)
        self._factor = (1.0 + self.scale_error[0] + float(factor[0]),
                        1.0 + self.scale_error[1] + float(factor[1]))
        self._offset = (float(offset[0]), float(offset[1]))

    def measure(self, left: float, right: float, dt: float = 0.0) -> tuple[float, float]:
        """
        Return the measured twist of true wheel speeds ``(left, right)`` over ``dt`` s.

        Call once per physics tick, moving or not, so the noise follows the clock. Stalled
        wheels read exactly 0 unless there is additive noise: relative errors vanish with
        the speed, which is what keeps a resting real robot's odometry still.
        """
        if self._noisy:
            if self._clock >= self._next_draw - 1e-12:
                self._draw()
                while self._next_draw <= self._clock + 1e-12:
                    self._next_draw += self.noise_interval
            self._clock += dt
        if self._factor != (1.0, 1.0) or self._offset != (0.0, 0.0):
            left = left * self._factor[0] + self._offset[0]
            right = right * self._factor[1] + self._offset[1]
        return twist_from_wheels(left, right, self.wheel_base)

    def advance(self, linear: float, angular: float, dt: float) -> np.ndarray:
        """Integrate a measured twist for ``dt`` seconds; return the new odom pose."""
        self.twist = (linear, angular)
        if dt > 0.0 and (linear != 0.0 or angular != 0.0):
            self.pose = integrate(self.pose, linear, angular, dt)
        return self.pose

    def update(self, left: float, right: float, dt: float) -> np.ndarray:
        """Measure true wheel speeds over ``dt`` seconds and integrate them."""
        return self.advance(*self.measure(left, right, dt), dt)
