"""Duration error: how far the generated music's length is from the video clip's length."""
from __future__ import annotations

import numpy as np

from metrics.base import ClipContext, MetricInfo


class DurationError:
    """|duration(generated audio) - duration(video clip)| in seconds; 0 is perfect.

    Every system is asked for music as long as its video; this catches truncated or overlong outputs, which
    silently bias metrics that crop pairs to the shorter length.
    """

    info = MetricInfo(
        name="duration-error", version=1, units="s", higher_is_better=False,
        description="absolute difference between the generated audio's and the video clip's durations",
        reference_impl="vm-eval's own sanity check (no published counterpart)",
        null_value="0 s = exactly as long as the video",
        caveats=("a truncated or overlong output biases every metric that crops pairs to the shorter length",),
    )

    def score(self, audio: np.ndarray, sample_rate: int, ctx: ClipContext) -> float:
        return abs(audio.shape[-1] / sample_rate - ctx.duration_s)
