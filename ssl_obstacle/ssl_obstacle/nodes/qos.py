"""Quality of service of the package's own topics, shared by the nodes at both ends."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

#: LabeledFrames are the trainer's data: reliable, with room for the labeler's bursts (it
#: finalises many frames at once) and for a trainer whose executor a busy CPU holds up for a
#: few seconds: 500 frames (8 MB) on each side. At 100, a trainer beside a dozen nodes in one
#: loaded process lost 1-8 of 121 frames per robot (test_fleet.py, 2 runs of 5).
LABELED_FRAMES_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=500, reliability=ReliabilityPolicy.RELIABLE)

#: The model topic: reliable and transient local with depth 1, so a predictor that starts
#: (or reconnects) late receives the newest weights at once, and only those.
MODEL_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                       reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL)
