"""How long each soundtrack of a trial was played, from the listen events the browser reported.

The player has one timeline (the muted video's currentTime) and two soundtracks, A and B, of which at most one
plays. Events are (side, play | pause | ended | seek, media time) in arrival order, stamped with the server clock.
A *segment* opens at ``play`` and closes at the next ``pause`` / ``ended`` / ``seek`` of that side, or at a
``play`` of either side (starting one soundtrack stops the other). A closed segment counts

    min(media time progressed, server time elapsed + slack)

seconds, so a client can claim no more listening than real time allowed (up to `slack` per segment for network
jitter between the two reports); a segment closed by a seek counts the server time elapsed only (its media time
is the new position), and one still open counts nothing. This is the server-side check behind the minimum
listening time of the music-arena protocol (gclef-cmu/music-arena); the arithmetic here is ours.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

SLACK_S = 0.5


class EventLike(Protocol):
    side: str
    event: str
    media_time: float
    server_time: float


@dataclass(frozen=True)
class Segment:
    side: str
    media_t0: float
    server_t0: float


def listened_seconds(events: Iterable[EventLike], slack_s: float = SLACK_S) -> dict[str, float]:
    """Seconds of playback per side {"A": .., "B": ..} from events in arrival order (see the module docstring)."""
    total = {"A": 0.0, "B": 0.0}
    open_: Segment | None = None

    def close(seg: Segment, media_t: float | None, server_t: float) -> None:
        wall = max(0.0, server_t - seg.server_t0)
        counted = wall if media_t is None else min(max(0.0, media_t - seg.media_t0), wall + slack_s)
        total[seg.side] += counted

    for e in events:
        if e.side not in total:
            continue
        if e.event == "play":
            if open_ is not None:
                close(open_, e.media_time, e.server_time)
            open_ = Segment(e.side, e.media_time, e.server_time)
        elif open_ is not None and open_.side == e.side:
            if e.event in ("pause", "ended"):
                close(open_, e.media_time, e.server_time)
                open_ = None
            elif e.event == "seek":  # still playing from the new position
                close(open_, None, e.server_time)
                open_ = Segment(e.side, e.media_time, e.server_time)
    return {k: round(v, 3) for k, v in total.items()}
