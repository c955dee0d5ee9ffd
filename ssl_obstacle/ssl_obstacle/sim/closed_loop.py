"""
The simulator and the explorer in one loop, without ROS: for recording and fast runs.

The explorer node computes a command at 10 Hz from the latest proximity readings; here the
explorer is updated on every proximity tick (10 Hz by default), from the readings of that
tick, and its command applied at once, which is the same behaviour without a network in
between, and deterministic for a seed.
"""

from __future__ import annotations

from typing import Iterator

from .simulator import SimEvent, Simulator
from ..core.explorer import Explorer


class ClosedLoop:
    """Steps a :class:`Simulator` while an :class:`Explorer` drives it."""

    def __init__(self, sim: Simulator, explorer: Explorer) -> None:
        self.sim = sim
        self.explorer = explorer
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
            if event.kind != 'range':
                continue
            if event.stamp != self._readings_stamp:
                self._readings, self._readings_stamp = {}, event.stamp
            self._readings[event.sensor] = event.value
            if len(self._readings) == self._sensor_count:
                self.command = self.explorer.update(event.stamp / 1e9, self._readings)
                self.sim.set_command(*self.command)
                out.append(SimEvent(event.stamp, 'cmd_vel', twist=tuple(self.command)))
        return out

    def run(self, duration: float) -> Iterator[SimEvent]:
        """Yield every event of the next ``duration`` simulated seconds."""
        end = self.sim.now_ns + int(round(duration * 1e9))
        while self.sim.now_ns < end:
            yield from self.step()
