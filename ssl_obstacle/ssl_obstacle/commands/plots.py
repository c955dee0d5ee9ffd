"""
Figures and report files of evaluations (``evaluate``, the demo, benchmarks).

Every file is written atomically: to a hidden temporary file in the target directory, then
renamed over the target, so a reader (or a crash) never sees a half-written PNG or JSON.
Figures are drawn with matplotlib's object API (``Figure`` rendered by Agg), never pyplot:
no display is needed, no global state is touched, and nodes may plot from any thread.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Sequence

import matplotlib
from matplotlib.figure import Figure
import numpy as np

from ..core.atomic_file import atomic_output


def json_ready(value: Any) -> Any:
    """Return ``value`` with numpy types as Python ones and NaN/inf as None (JSON null)."""
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON atomically (NaN becomes null, as JSON has no NaN)."""
    with atomic_output(path) as temp:
        temp.write_text(json.dumps(json_ready(data), indent=2, allow_nan=False) + '\n')


def write_csv(path: str | os.PathLike[str], header: Sequence[str],
              rows: Sequence[Sequence[Any]]) -> None:
    """Write a table as CSV atomically (floats with 4 decimals, NaN as an empty cell)."""
    def cell(value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            return '' if not math.isfinite(value) else f'{value:.4f}'
        return str(value)

    with atomic_output(path) as temp:
        temp.write_text('\n'.join(','.join(cell(v) for v in row)
                                  for row in [list(header), *rows]) + '\n')


def _save(figure: Figure, path: str | os.PathLike[str]) -> None:
    with atomic_output(path) as temp:
        figure.savefig(temp, format='png', dpi=110)


def plot_auc_heatmap(path: str | os.PathLike[str], grid: np.ndarray,
                     sensor_names: Sequence[str], distances: Sequence[float],
                     title: str = 'ROC AUC per sensor and distance') -> None:
    """
    Draw the AUC grid as an annotated colour map: distance (rows) × sensor (columns).

    The scale runs from 0.5 (chance) to 1; cells without both classes are grey and marked
    'n/a', so a missing value is never mistaken for a poor one.
    """
    grid = np.asarray(grid, dtype=np.float64).T  # (D, S)
    distances = list(distances)
    height = max(4.0, 0.22 * len(distances) + 1.5)
    figure = Figure(figsize=(1.3 * len(sensor_names) + 2.5, height))
    axes = figure.subplots()
    cmap = matplotlib.colormaps['viridis'].with_extremes(bad='0.8')
    image = axes.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.5, vmax=1.0,
                        aspect='auto', origin='lower', interpolation='nearest')
    for d in range(grid.shape[0]):
        for s in range(grid.shape[1]):
            value = grid[d, s]
            text = 'n/a' if np.isnan(value) else f'{value:.2f}'
            color = 'black' if np.isnan(value) or value > 0.8 else 'white'
            axes.text(s, d, text, ha='center', va='center', fontsize=6, color=color)
    axes.set_xticks(range(len(sensor_names)), labels=list(sensor_names), rotation=30,
                    ha='right')
    step = max(1, len(distances) // 16)
    axes.set_yticks(range(0, len(distances), step),
                    labels=[f'{100 * d:.0f}' for d in distances[::step]])
    axes.set_xlabel('sensor')
    axes.set_ylabel('distance ahead [cm]')
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label='AUC')
    figure.tight_layout()
    _save(figure, path)


def plot_paper_heatmap(path: str | os.PathLike[str], grid: np.ndarray,
                       sensor_names: Sequence[str], distances: Sequence[float]) -> None:
    """
    Draw an AUC grid (S, D) as Nava et al.'s test.py does, to lay beside their figure.

    Their layout and scale: AUC × 100 annotated on a grey scale from 50 (black) to 100
    (white; the numbers there in black, where theirs are white and unreadable), distances
    as rows from the farthest (top) to 0 cm (bottom), every other one labelled, sensors as
    columns left to right labelled left, center, right.
    """
    from ..core.nava_protocol import paper_orientation

    table = 100.0 * paper_orientation(np.asarray(grid, dtype=np.float64))  # (D, S)
    labels = [f'{100 * d:.0f}' for d in np.asarray(distances, dtype=np.float64)[::-1]]
    figure = Figure(figsize=(3.75 + 0.3 * max(0, len(sensor_names) - 5),
                             max(3.8, 0.16 * len(labels) + 1.2)))
    axes = figure.subplots()
    image = axes.imshow(table, cmap='gray', vmin=50, vmax=100, aspect='auto',
                        interpolation='nearest')
    for row in range(table.shape[0]):
        for column in range(table.shape[1]):
            value = table[row, column]
            axes.text(column, row, f'{value:.0f}', ha='center', va='center', fontsize=5,
                      color='black' if value > 80 else 'white')  # theirs: white on all
    middle = len(sensor_names) // 2
    ticks = ['left' if i == 0 else 'right' if i == len(sensor_names) - 1
             else 'center' if i == middle else '' for i in range(len(sensor_names))]
    axes.set_xticks(range(len(sensor_names)), labels=ticks)
    axes.set_yticks(range(0, len(labels), 2), labels=labels[::2], fontsize=6)
    axes.set_xlabel('Sensors')
    axes.set_ylabel('Distance [cm]')
    axes.set_title('AUC x 100 (Nava et al. 2019 protocol)', fontsize=8)
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    _save(figure, path)


def plot_paper_auc_vs_distance(path: str | os.PathLike[str], mean: np.ndarray, std: np.ndarray,
                               sensor_names: Sequence[str], distances: Sequence[float]) -> None:
    """
    Draw their second figure: AUC against distance, lateral and central sensor, mean ± std.

    Lateral is the first (leftmost) sensor and central the middle one, as in their test.py
    (columns 0 and 2 of five); the band is ± one standard deviation over the rounds.
    """
    centimetres = 100.0 * np.asarray(distances, dtype=np.float64)
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    figure = Figure(figsize=(3.75, 3.0))
    axes = figure.subplots()
    middle = len(sensor_names) // 2
    for sensor, colour, label in ((0, '#3333CC', 'lateral'), (middle, '#000000', 'central')):
        axes.plot(centimetres, mean[sensor], color=colour, lw=2, label=label)
        axes.fill_between(centimetres, mean[sensor] - std[sensor], mean[sensor] + std[sensor],
                          color=colour, alpha=0.35, linewidth=0)
    axes.set_ylim(top=1.0)
    axes.set_xlabel('Distance [cm]')
    axes.set_ylabel('AUC')
    axes.set_title('AUC vs distance (Nava et al. 2019 protocol)', fontsize=8)
    axes.legend(loc='upper right')
    figure.tight_layout()
    _save(figure, path)


def plot_auc_by_distance(path: str | os.PathLike[str], distances: Sequence[float],
                         auc: Sequence[float], low: Sequence[float] | None = None,
                         high: Sequence[float] | None = None,
                         title: str = 'ROC AUC by distance (all sensors pooled)',
                         label: str = 'AUC') -> None:
    """Draw AUC against distance, with its confidence band when ``low``/``high`` are given."""
    centimetres = 100.0 * np.asarray(distances, dtype=np.float64)
    figure = Figure(figsize=(6.4, 4.0))
    axes = figure.subplots()
    if low is not None and high is not None:
        axes.fill_between(centimetres, np.asarray(low, dtype=np.float64),
                          np.asarray(high, dtype=np.float64), alpha=0.3, label='95% CI')
    axes.plot(centimetres, np.asarray(auc, dtype=np.float64), marker='o', markersize=3,
              label=label)
    axes.axhline(0.5, color='0.5', linestyle='--', linewidth=1, label='chance')
    axes.set_ylim(0.4, 1.02)
    axes.set_xlabel('distance ahead [cm]')
    axes.set_ylabel('ROC AUC')
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc='lower left')
    figure.tight_layout()
    _save(figure, path)


def plot_reliability(path: str | os.PathLike[str], curves: Mapping[str, Mapping[str, Any]],
                     ece: Mapping[str, float]) -> None:
    """
    Draw a reliability diagram per distance band: observed obstacle rate against P.

    On the diagonal, P means what it says; the bars below show how many cells each bin has
    (a bin of ten cells says little).
    """
    names = [name for name in curves if name != 'all'] or list(curves)
    figure = Figure(figsize=(3.2 * len(names), 4.2))
    axes_row = figure.subplots(2, len(names), squeeze=False,
                               gridspec_kw={'height_ratios': [3, 1]}, sharex=True)
    for column, name in enumerate(names):
        curve = curves[name]
        edges = np.asarray(curve['bin_edges'], dtype=np.float64)
        centres = 0.5 * (edges[:-1] + edges[1:])
        predicted = _floats(curve['mean_predicted'])
        observed = _floats(curve['observed_rate'])
        axes, counts = axes_row[0][column], axes_row[1][column]
        axes.plot([0, 1], [0, 1], color='0.5', linestyle='--', linewidth=1)
        used = ~np.isnan(predicted)
        axes.plot(predicted[used], observed[used], marker='o', markersize=3)
        value = ece.get(name, float('nan'))
        axes.set_title(f'{name}: ECE {value:.3f}' if np.isfinite(value) else name)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.grid(alpha=0.3)
        cells = np.asarray(curve['cells'], dtype=np.float64)
        counts.bar(centres, cells, width=edges[1] - edges[0], color='0.6')
        if cells.any():  # a band with no known cell has nothing to put on a log scale
            counts.set_yscale('log')
        counts.set_xlabel('predicted P(obstacle)')
        if column == 0:
            axes.set_ylabel('observed obstacle rate')
            counts.set_ylabel('cells')
    figure.tight_layout()
    _save(figure, path)


def plot_confidence(path: str | os.PathLike[str], check: Mapping[str, Any],
                    sensor_names: Sequence[str], distances: Sequence[float]) -> None:
    """
    Draw whether the published confidence foresees the error, and where it is low.

    Left: the mean |P - label| of the known cells in groups of rising confidence (it should
    fall). Right: the mean confidence per sensor and distance (low where the model cannot
    know, e.g. the side sensors' near cells, outside the camera's view).
    """
    groups = check['groups']
    figure = Figure(figsize=(10.0, 4.2))
    left, right = figure.subplots(1, 2, gridspec_kw={'width_ratios': [1, 1.3]})
    names = [f'{g["confidence_low"]:.2f}-{g["confidence_high"]:.2f}' for g in groups]
    left.bar(range(len(groups)), [g['mean_abs_error'] for g in groups], color='tab:blue')
    left.set_xticks(range(len(groups)), labels=names)
    left.set_xlabel('confidence (equal shares of known cells)')
    left.set_ylabel('mean |P - label|')
    rank = check.get('rank_correlation', float('nan'))
    left.set_title(f'error by confidence (rank correlation {rank:+.2f})'
                   if np.isfinite(rank) else 'error by confidence')
    left.grid(axis='y', alpha=0.3)
    grid = np.asarray(check['mean_by_cell'], dtype=np.float64).T  # (D, S)
    image = right.imshow(grid, cmap='viridis', vmin=0.0, vmax=1.0, aspect='auto',
                         origin='lower', interpolation='nearest')
    right.set_xticks(range(len(sensor_names)), labels=list(sensor_names), rotation=30,
                     ha='right')
    step = max(1, len(distances) // 8)
    right.set_yticks(range(0, len(distances), step),
                     labels=[f'{100 * d:.0f}' for d in list(distances)[::step]])
    right.set_ylabel('distance ahead [cm]')
    right.set_title('mean confidence per cell')
    figure.colorbar(image, ax=right, label='confidence')
    figure.tight_layout()
    _save(figure, path)


def _floats(values: Any) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def plot_learning_curve(path: str | os.PathLike[str], sim_seconds: Sequence[float],
                        running_auc: Sequence[float], heldout_auc: Sequence[float]) -> None:
    """Plot the running (prequential) and held-out AUC against simulated time."""
    figure = Figure(figsize=(6.4, 3.6))
    axes = figure.add_subplot()
    minutes = np.asarray(sim_seconds, dtype=np.float64) / 60.0
    axes.plot(minutes, np.asarray(running_auc, dtype=np.float64), label='running (prequential)')
    axes.plot(minutes, np.asarray(heldout_auc, dtype=np.float64), label='held-out world',
              marker='o', markersize=3)
    axes.axhline(0.5, color='grey', linewidth=0.8, linestyle=':')
    axes.set_xlabel('simulated time (min)')
    axes.set_ylabel('ROC AUC (mean over cells)')
    axes.set_ylim(0.3, 1.0)
    axes.grid(alpha=0.3)
    axes.legend(loc='lower right')
    axes.set_title('Learning while driving')
    figure.tight_layout()
    _save(figure, path)


def plot_examples(path: str | os.PathLike[str], images: np.ndarray, predicted: np.ndarray,
                  truth: np.ndarray, sensor_names: Sequence[str],
                  distances: Sequence[float]) -> None:
    """Show frames beside their predicted and true grids (sensor × distance, red = obstacle)."""
    count = len(images)
    figure = Figure(figsize=(9.0, 2.2 * count))
    extent = (0, 100 * float(distances[-1]), len(sensor_names) - 0.5, -0.5)
    for row in range(count):
        image_axes = figure.add_subplot(count, 3, 3 * row + 1)
        image_axes.imshow(images[row])
        image_axes.set_axis_off()
        panels = ((predicted[row], 'predicted'), (truth[row], 'ground truth'))
        for column, (grid, title) in enumerate(panels, start=2):
            axes = figure.add_subplot(count, 3, 3 * row + column)
            axes.imshow(grid, cmap='RdYlGn_r', vmin=0.0, vmax=1.0, aspect='auto',
                        extent=extent, interpolation='nearest')
            axes.set_yticks(range(len(sensor_names)))
            axes.set_yticklabels(sensor_names, fontsize=7)
            axes.tick_params(axis='x', labelsize=7)
            if row == 0:
                axes.set_title(title, fontsize=9)
            if row == count - 1:
                axes.set_xlabel('distance ahead (cm)', fontsize=8)
    figure.tight_layout()
    _save(figure, path)


def _draw_world(axes: Any, world: Any) -> None:
    """Draw the arena's walls and obstacles from above, in their own colours."""
    from matplotlib.patches import Circle, Polygon, Rectangle

    half_x, half_y = world.size_x / 2, world.size_y / 2
    axes.add_patch(Rectangle((-half_x, -half_y), world.size_x, world.size_y, fill=False,
                             edgecolor='0.3', linewidth=2))
    for obstacle in world.obstacles:
        colour = tuple(min(1.0, max(0.0, c)) for c in obstacle.color)
        if obstacle.kind == 'cylinder':
            patch = Circle((obstacle.x, obstacle.y), obstacle.radius)
        else:
            patch = Polygon(obstacle.corners(), closed=True)
        patch.set_facecolor(colour)
        patch.set_edgecolor('0.2')
        axes.add_patch(patch)
    margin = 0.05
    axes.set_xlim(-half_x - margin, half_x + margin)
    axes.set_ylim(-half_y - margin, half_y + margin)
    axes.set_aspect('equal')


def plot_trajectories(path: str | os.PathLike[str], world: Any,
                      runs: Sequence[tuple[str, np.ndarray, Sequence[tuple[float, float]],
                                           Sequence[tuple[float, float]]]]) -> None:
    """
    Plot runs in one world from above, side by side: path coloured by speed, marks.

    Each run is ``(title, path (N, 3) of x, y, speed, near-hit points, collision points)``;
    near-hits are orange crosses, collisions red stars. One speed scale for all panels,
    so the colours compare.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    figure = Figure(figsize=(5.2 * len(runs) + 0.8, 5.2), layout='constrained')
    top = max([float(p[:, 2].max()) for _, p, _, _ in runs if len(p)] + [0.01])
    norm = Normalize(vmin=0.0, vmax=top)
    lines = None
    for index, (title, points, near_hits, collisions) in enumerate(runs):
        axes = figure.add_subplot(1, len(runs), index + 1)
        _draw_world(axes, world)
        if len(points) > 1:
            segments = np.stack([points[:-1, :2], points[1:, :2]], axis=1)
            lines = LineCollection(segments, cmap='viridis', norm=norm, linewidth=1.2)
            lines.set_array(points[1:, 2])
            axes.add_collection(lines)
            axes.plot(*points[0, :2], marker='o', color='black', markersize=5, label='start')
        if len(near_hits):
            xy = np.asarray(near_hits, dtype=np.float64)
            axes.plot(xy[:, 0], xy[:, 1], linestyle='none', marker='x', color='tab:orange',
                      markersize=7, markeredgewidth=2, label=f'near-hit ({len(xy)})')
        if len(collisions):
            xy = np.asarray(collisions, dtype=np.float64)
            axes.plot(xy[:, 0], xy[:, 1], linestyle='none', marker='*', color='red',
                      markersize=12, label=f'collision ({len(xy)})')
        axes.set_title(title, fontsize=9)
        axes.set_xlabel('x (m)')
        axes.set_ylabel('y (m)')
        axes.legend(loc='upper right', fontsize=7, framealpha=0.6)
    if lines is not None:
        figure.colorbar(lines, ax=figure.axes, label='speed (m/s)', shrink=0.8)
    _save(figure, path)
