"""
The simulator and a controller in one loop, without ROS: for recording and fast runs.

The explorer and avoider nodes compute a command at 10 Hz from the latest proximity
readings; here the controller is updated on every proximity tick (10 Hz by default), from
the readings of that tick, and its command applied at once, which is the same behaviour
without a network in between, and deterministic for a seed. A controller that also looks
(the avoider) is shown every event first through ``observe``, so a camera frame's
prediction is in before the command of the same tick is computed.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, Protocol

from .simulator import SimEvent, Simulator


class Controller(Protocol):
    """What drives the robot: the explorer, the avoider."""

    def update(self, now: float, ranges: Mapping[str, float]) -> tuple[float, float]:
        """Return the twist for time ``now`` (s) from the latest proximity readings."""


class ClosedLoop:
    """Steps a :class:`Simulator` while a :class:`Controller` drives it."""

    def __init__(self, sim: Simulator, controller: Controller,
                 observe: Callable[[SimEvent], None] | None = None) -> None:
        """Drive ``sim`` with ``controller``; ``observe`` sees each event before commands."""
        self.sim = sim
        self.controller = controller
        self.observe = observe
        self.command: tuple[float, float] = (0.0, 0.0)
        self._readings: dict[str, float] = {}
        self._readings_stamp: int | None = None
        self._sensor_count = len(sim.settings.sensor_names)

    def step(self) -> list[SimEvent]:
        """Advance one physics tick; return its events plus a ``cmd_vel`` event per command."""
        events = self.sim.step()
        out: list[SimEvent] = []
        for event in events:
            out.append(event)
            if self.observe is not None:
                self.observe(event)
            if event.kind != 'range':
                continue
            if event.stamp != self._readings_stamp:
                self._readings, self._readings_stamp = {}, event.stamp
            self._readings[event.sensor] = event.value
            if len(self._readings) == self._sensor_count:
                self.command = self.controller.update(event.stamp / 1e9, self._readings)
                self.sim.set_command(*self.command)
                out.append(SimEvent(event.stamp, 'cmd_vel', twist=tuple(self.command)))
        return out

    def run(self, duration: float) -> Iterator[SimEvent]:
        """Yield every event of the next ``duration`` simulated seconds."""
        end = self.sim.now_ns + int(round(duration * 1e9))
        while self.sim.now_ns < end:
            yield from self.step()
