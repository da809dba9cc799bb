"""Simulated raters against a served study over real HTTP: the load test of the rater API.

Each simulated rater does what the trial page does, request for request: consent, volume check, state, then per
trial four listen events (play A, pause A, play B, pause B, each its own request, sent in order) and one vote with
every question answered; some raters replay a vote (the same submission again) or send it twice at once, as a
double click or a retry after a lost response would. All raters run concurrently (asyncio + httpx).

The listen events claim ``listen_s`` of media time per side at once; the server counts at most the wall time
elapsed plus its slack (``studies.server.listening.SLACK_S``), so ``listen_s`` must be at most the slack and the
study's ``min_listen_s`` at most ``listen_s`` for the votes to be accepted without real waiting.

Used by tests/test_study_load.py (correctness: every acknowledged vote stored once) and benchmarks/study_load.py
(latency percentiles, recorded in BENCHMARKS.md).
"""
from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoadResult:
    """What the simulated raters saw: votes the server acknowledged as stored, replays it acknowledged as
    duplicates, requests resent after a transport error, errors (status and body, at most a few kept per kind),
    latency in seconds per request kind."""

    raters: int
    completed: int = 0
    acknowledged: int = 0
    duplicate_acks: int = 0
    requests: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    error_examples: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    wall_s: float = 0.0

    def percentiles(self) -> dict[str, dict[str, float]]:
        """Per request kind and "all": n, p50, p95, p99 and max latency in milliseconds."""
        kinds = {**self.latencies, "all": [x for v in self.latencies.values() for x in v]}
        out = {}
        for kind, xs in kinds.items():
            a = np.asarray(xs) * 1000.0
            out[kind] = {"n": len(a), **({f"p{q}": float(np.percentile(a, q)) for q in (50, 95, 99)} if len(a) else {}),
                         "max": float(a.max()) if len(a) else float("nan")}
        return out


async def _call(client, result: LoadResult, kind: str, method: str, path: str, body: dict | None = None,
                expect: tuple[int, ...] = (200,)) -> dict | None:
    import httpx

    t0 = time.perf_counter()
    for attempt in range(2):
        try:
            r = await client.request(method, path, json=body)
            break
        except httpx.TransportError as e:
            # A kept-alive connection the server closed as it was reused: browsers resend such a request once,
            # and so does a simulated rater (counted; a second failure is an error).
            if attempt == 0:
                result.retries += 1
                continue
            result.errors[f"{kind}: {type(e).__name__}"] += 1
            if len(result.error_examples) < 10:
                result.error_examples.append(f"{kind} {path}: {e!r}")
            return None
    result.latencies[kind].append(time.perf_counter() - t0)
    result.requests += 1
    if r.status_code not in expect:
        result.errors[f"{kind}: {r.status_code}"] += 1
        if len(result.error_examples) < 10:
            result.error_examples.append(f"{kind} {path}: {r.status_code} {r.text[:300]}")
        return None
    return r.json()


def _count_vote(result: LoadResult, reply: dict | None) -> None:
    if reply is not None:
        result.acknowledged += len(reply["stored"])
        result.duplicate_acks += len(reply["duplicates"])


async def _rater(client, rid: str, result: LoadResult, listen_s: float, rng: random.Random, replay: float) -> None:
    api = f"/api/raters/{rid}"
    if await _call(client, result, "consent", "POST", f"{api}/consent") is None:
        return
    if await _call(client, result, "volume-check", "POST", f"{api}/volume-check") is None:
        return
    state = await _call(client, result, "state", "GET", f"{api}/state")
    while state is not None and state["trial"] is not None:
        trial = state["trial"]
        tpath = f"{api}/trials/{trial['token']}"
        t = 0.0
        for side in ("A", "B"):
            for event, dt in (("play", 0.0), ("pause", listen_s)):
                t += dt
                body = {"events": [{"side": side, "event": event, "media_time": t, "client_time": time.time() * 1e3}]}
                await _call(client, result, "events", "POST", f"{tpath}/events", body)
        answers = {q["id"]: rng.choice(trial["options"]) for q in trial["questions"]
                   if q["id"] not in trial["answered"]}
        vote = {"answers": answers, "submission_id": f"{rid}-{trial['index']}-{rng.getrandbits(32):08x}"}
        draw = rng.random()
        if draw < replay / 2:  # a double click: the same submission twice at once
            replies = await asyncio.gather(*(_call(client, result, "vote", "POST", f"{tpath}/votes", vote)
                                             for _ in range(2)))
            for reply in replies:
                _count_vote(result, reply)
        else:
            _count_vote(result, await _call(client, result, "vote", "POST", f"{tpath}/votes", vote))
            if draw < replay:  # a retry after a lost response
                _count_vote(result, await _call(client, result, "vote", "POST", f"{tpath}/votes", vote))
        state = await _call(client, result, "state", "GET", f"{api}/state")
    if state is not None and state["complete"]:
        result.completed += 1


async def simulate_async(url: str, raters: int, *, listen_s: float = 0.3, replay: float = 0.2, seed: int = 0,
                         prefix: str = "load") -> LoadResult:
    """Run `raters` simulated raters at once against the study served at `url` (see the module docstring)."""
    import httpx

    result = LoadResult(raters)
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=raters, max_keepalive_connections=raters)
    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(60.0)) as client:
        await asyncio.gather(*(_rater(client, f"{prefix}-{i:04d}", result, listen_s,
                                      random.Random(rng.getrandbits(64)), replay) for i in range(raters)))
    result.wall_s = time.perf_counter() - t0
    return result


def simulate(url: str, raters: int, **kwargs) -> LoadResult:
    """Blocking form of :func:`simulate_async`."""
    return asyncio.run(simulate_async(url, raters, **kwargs))
