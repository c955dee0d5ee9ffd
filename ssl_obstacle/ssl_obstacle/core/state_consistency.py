"""
The state-consistency loss of Nava et al. (RA-L 2021), on pairs of buffered frames.

A cell (s, d) of a frame taken at pose p asks: would sensor s see an obstacle with the
robot at p ⊕ (d, 0, 0)? A later frame taken at p' = p ⊕ (Δ, 0, 0) asks the same question of
that state in its cell (s, d − Δ). Both predictions are about one state of the world, so
they must agree, whether or not any reading ever labeled it: the loss is the squared
difference of the two probabilities over every such cell. It needs no label, only the
odometry between the two frames, and it ties the far cells of a frame (rarely labeled, the
robot seldom drives 30 cm straight) to the near cells of a later frame.

Pairs are found the way the label rule matches readings to frames: the partner lies ahead
of the anchor along its heading, by a whole number of distance steps within ``tol_x``,
laterally within ``tol_y`` and turned within ``tol_theta``; both frames come from one robot
within ``max_gap`` seconds of each other (odometry drift stays small).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .geometry import relative_pose


@dataclass(frozen=True)
class PairTolerance:
    """How close to a pure forward translation two frames' poses must be (metres, rad, s)."""

    tol_x: float = 0.005
    tol_y: float = 0.01
    tol_theta: float = 0.05
    max_gap: float = 10.0


def find_partners(anchors: np.ndarray, poses: np.ndarray, sources: np.ndarray,
                  stamps: np.ndarray, candidates: np.ndarray, distances: np.ndarray,
                  rng: np.random.Generator, tolerance: PairTolerance = PairTolerance()
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Return (which, partner, shift) for the ``anchors`` (indices) that have a partner.

    ``poses`` (N, 3), ``sources`` (N,) and ``stamps`` (N,, ns) describe every frame;
    ``candidates`` are the indices a partner may be drawn from. ``shift`` is the number of
    distance steps the partner lies ahead (at least 1, less than the grid's length); among
    several partners one is drawn at random; ``which`` are positions in ``anchors``.
    ``distances`` must be evenly spaced.
    """
    distances = np.asarray(distances, dtype=np.float64)
    step = float(distances[1] - distances[0]) if len(distances) > 1 else 0.0
    found_anchor, found_partner, found_shift = [], [], []
    if step <= 0.0 or not len(candidates):
        return _pairs(found_anchor, found_partner, found_shift)
    max_gap_ns = int(tolerance.max_gap * 1e9)
    for which, anchor in enumerate(anchors):
        pool = candidates[(sources[candidates] == sources[anchor])
                          & (np.abs(stamps[candidates] - stamps[anchor]) <= max_gap_ns)]
        if not len(pool):
            continue
        offset = relative_pose(poses[anchor], poses[pool])
        shift = np.rint(offset[:, 0] / step)
        fits = ((shift >= 1) & (shift < len(distances))
                & (np.abs(offset[:, 0] - shift * step) <= tolerance.tol_x)
                & (np.abs(offset[:, 1]) <= tolerance.tol_y)
                & (np.abs(offset[:, 2]) <= tolerance.tol_theta))
        if not fits.any():
            continue
        choice = rng.choice(np.flatnonzero(fits))
        found_anchor.append(which)
        found_partner.append(pool[choice])
        found_shift.append(int(shift[choice]))
    return _pairs(found_anchor, found_partner, found_shift)


def _pairs(anchors: list[int], partners: list[int],
           shifts: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.array(anchors, np.int64), np.array(partners, np.int64),
            np.array(shifts, np.int64))


def consistency_loss(anchor_logits: torch.Tensor, partner_logits: torch.Tensor,
                     shifts: torch.Tensor | np.ndarray) -> torch.Tensor:
    """
    Return the mean squared difference of P(obstacle) over the cells two frames share.

    ``anchor_logits`` and ``partner_logits`` (K, S, D); pair k compares the anchor's cell
    (s, d) with the partner's (s, d − shift[k]) for every d ≥ shift[k]. Gradients reach
    both frames' predictions. Zero (with a graph) when there is no pair.
    """
    count, _, length = anchor_logits.shape
    if count == 0:
        return anchor_logits.sum() * 0.0
    shifts = torch.as_tensor(shifts, device=anchor_logits.device).view(count, 1)
    columns = torch.arange(length, device=anchor_logits.device).view(1, length)
    shared = columns >= shifts  # (K, D): anchor cells the partner also predicts
    source = (columns - shifts).clamp_min(0)  # (K, D): the partner's matching column
    index = source.unsqueeze(1).expand_as(partner_logits)
    partner = torch.gather(torch.sigmoid(partner_logits), 2, index)
    squared = (torch.sigmoid(anchor_logits) - partner) ** 2
    mask = shared.unsqueeze(1).expand_as(squared)
    return torch.where(mask, squared, torch.zeros_like(squared)).sum() / mask.sum().clamp_min(1)
