"""How long each soundtrack of a trial was played, credited from the server's clock.

The player has one timeline (the muted video's currentTime) and two soundtracks, A and B, of which at most one
plays. The browser reports each play / pause / ended / seek in its own request, and the server stamps every event
with its own clock on arrival (``server_time``); the server also records when it first served the trial
(:data:`SERVED`). A *segment* opens at ``play`` and closes at the next ``pause`` / ``ended`` / ``seek`` of that
side, or at a ``play`` of either side (starting one soundtrack stops the other). A closed segment credits

    min(server time between the two arrivals, media time the client says progressed, media duration)

seconds (a segment closed by a seek: the server time only, capped by the duration, as its media time is the new
position), and one still open credits nothing. The server time is measured from no earlier than the moment the
trial was served, and each side's total is capped by the server time since then. So the client's numbers can
only lower the credit, never raise it: events sent in one batch arrive at one instant and credit nothing, and no
sequence of requests can credit more listening than real time has passed. This is the server-side check behind
the minimum listening time of the music-arena protocol (gclef-cmu/music-arena); the arithmetic here is ours.

A vote needs each side's credit to reach the trial's minimum less :data:`JITTER_S` (network jitter).

Short clips: a clip shorter than twice the study's minimum gets half its duration as the minimum
(:func:`trial_min_listen_s`), so that it is still heard at least half through on each side without replaying.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

SERVED = "served"  # the event (side "-") the server records when it first serves a trial
SERVED_SIDE = "-"
MAX_EVENTS_PER_TRIAL = 200  # listen events one trial may record (an honest rater sends a few dozen at most)
# A vote is accepted when each side's credit is within this of the minimum: the page counts from the video's
# progress, the server from arrival times, and a play that reaches the server later than its pause (network
# jitter, the page's request queue) would otherwise refuse a rater who did listen long enough.
JITTER_S = 0.2


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


def trial_min_listen_s(min_listen_s: float, duration_s: float) -> float:
    """The minimum listening per side for a clip of `duration_s` seconds: the study's `min_listen_s`, or half the
    duration for clips shorter than twice it (rounded down to 0.1 s so the page can show it plainly)."""
    if duration_s >= 2 * min_listen_s:
        return float(min_listen_s)
    return max(0.0, int(duration_s / 2 * 10) / 10)


def listened_seconds(events: Iterable[EventLike], duration_s: float, now: float) -> dict[str, float]:
    """Seconds of playback credited per side {"A": .., "B": ..} from events in arrival order, for media of
    `duration_s` seconds, evaluated at server time `now` (see the module docstring)."""
    events = list(events)
    total = {"A": 0.0, "B": 0.0}
    marks = [e.server_time for e in events if e.event == SERVED]
    served = min(marks) if marks else None
    open_: Segment | None = None

    def close(seg: Segment, media_t: float | None, server_t: float) -> None:
        wall = max(0.0, server_t - seg.server_t0)
        counted = wall if media_t is None else min(wall, max(0.0, media_t - seg.media_t0))
        total[seg.side] += min(counted, duration_s)

    for e in events:
        if e.side not in total:
            continue
        t = e.server_time if served is None else max(e.server_time, served)
        if e.event == "play":
            if open_ is not None:
                close(open_, e.media_time, t)
            open_ = Segment(e.side, e.media_time, t)
        elif open_ is not None and open_.side == e.side:
            if e.event in ("pause", "ended"):
                close(open_, e.media_time, t)
                open_ = None
            elif e.event == "seek":  # still playing from the new position
                close(open_, None, t)
                open_ = Segment(e.side, e.media_time, t)
    if served is not None:
        total = {k: min(v, max(0.0, now - served)) for k, v in total.items()}
    return {k: round(v, 3) for k, v in total.items()}


def client_event_count(events: Iterable[EventLike]) -> int:
    """Events the client sent (the server's own :data:`SERVED` mark not counted)."""
    return sum(1 for e in events if e.event != SERVED)
