"""Simulated raters against a served study over real HTTP: the load test of the rater API.

Each simulated rater does what the trial page does, request for request: consent (which returns the rater's
session credential; every later call carries it as ``Authorization: Bearer``, since all simulated raters share one
client and so one cookie jar), volume check, state, then per trial four listen events (play A, pause A, play B,
pause B, each its own request, sent in order, waiting ``listen_s`` of real time between a play and its pause: the
server credits listening from its own clock) and one vote with every question answered; some raters replay a vote
(the same submission again) or send it twice at once, as a double click or a retry after a lost response would.
All raters run concurrently (asyncio + httpx). The study's per-trial minimum listening time must be at most
``listen_s``.

A run may be bounded in time (``time_limit_s``): past it no rater sends another request, requests in flight finish,
and the raters cut off are counted, so "votes acknowledged == votes stored" still holds for a cut-off run.

Used by tests/test_study_load.py and tests/test_study_postgres.py (correctness: every acknowledged vote stored
once) and benchmarks/study_load.py (throughput and latency percentiles, recorded in BENCHMARKS.md).
"""
from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import time
from collections.abc import Callable
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
    cut_off: int = 0  # raters that had requests left when the time limit passed
    deadline: float = float("inf")  # time.perf_counter() after which no request is sent

    @property
    def throughput(self) -> float:
        """Requests answered per second of wall time."""
        return self.requests / self.wall_s if self.wall_s > 0 else 0.0

    def percentiles(self) -> dict[str, dict[str, float]]:
        """Per request kind and "all": n, p50, p95, p99 and max latency in milliseconds."""
        kinds = {**self.latencies, "all": [x for v in self.latencies.values() for x in v]}
        out = {}
        for kind, xs in kinds.items():
            a = np.asarray(xs) * 1000.0
            out[kind] = {"n": len(a), **({f"p{q}": float(np.percentile(a, q)) for q in (50, 95, 99)} if len(a) else {}),
                         "max": float(a.max()) if len(a) else float("nan")}
        return out


class _CutOff(Exception):
    """The run's time limit passed: this rater sends nothing more."""


async def _call(client, result: LoadResult, kind: str, method: str, path: str, body: dict | None = None,
                expect: tuple[int, ...] = (200,), headers: dict | None = None, raw: bool = False):
    """One request, timed; the reply's JSON (or the response itself with `raw`), None after an error."""
    import httpx

    if time.perf_counter() > result.deadline:
        raise _CutOff
    t0 = time.perf_counter()
    for attempt in range(2):
        try:
            r = await client.request(method, path, json=body, headers=headers)
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
    return r if raw else r.json()


def _count_vote(result: LoadResult, reply: dict | None) -> None:
    if reply is not None:
        result.acknowledged += len(reply["stored"])
        result.duplicate_acks += len(reply["duplicates"])


async def _rater(client, rid: str, result: LoadResult, listen_s: float, rng: random.Random, replay: float) -> None:
    try:
        await _rater_steps(client, rid, result, listen_s, rng, replay)
    except _CutOff:
        result.cut_off += 1


async def _rater_steps(client, rid: str, result: LoadResult, listen_s: float, rng: random.Random,
                       replay: float) -> None:
    api = f"/api/raters/{rid}"
    consent = await _call(client, result, "consent", "POST", f"{api}/consent", raw=True)
    if consent is None:
        return
    cred = consent.cookies.get("vm_eval_session")
    auth = {"Authorization": f"Bearer {cred}"} if cred else None
    if await _call(client, result, "volume-check", "POST", f"{api}/volume-check", headers=auth) is None:
        return
    state = await _call(client, result, "state", "GET", f"{api}/state", headers=auth)
    while state is not None and state["trial"] is not None:
        trial = state["trial"]
        tpath = f"{api}/trials/{trial['token']}"
        t = 0.0
        for side in ("A", "B"):
            for event, dt in (("play", 0.0), ("pause", listen_s)):
                if dt:
                    await asyncio.sleep(dt)  # really listening: the server credits its own clock
                t += dt
                body = {"events": [{"side": side, "event": event, "media_time": t, "client_time": time.time() * 1e3}]}
                await _call(client, result, "events", "POST", f"{tpath}/events", body, headers=auth)
        answers = {q["id"]: rng.choice(trial["options"]) for q in trial["questions"]
                   if q["id"] not in trial["answered"]}
        vote = {"answers": answers, "submission_id": f"{rid}-{trial['index']}-{rng.getrandbits(32):08x}"}
        draw = rng.random()
        if draw < replay / 2:  # a double click: the same submission twice at once
            replies = await asyncio.gather(*(_call(client, result, "vote", "POST", f"{tpath}/votes", vote,
                                                   headers=auth) for _ in range(2)), return_exceptions=True)
            for reply in replies:  # count what was acknowledged before passing on a cut-off
                _count_vote(result, reply if isinstance(reply, dict) else None)
            for reply in replies:
                if isinstance(reply, BaseException):
                    raise reply
        else:
            _count_vote(result, await _call(client, result, "vote", "POST", f"{tpath}/votes", vote, headers=auth))
            if draw < replay:  # a retry after a lost response
                _count_vote(result, await _call(client, result, "vote", "POST", f"{tpath}/votes", vote,
                                                headers=auth))
        state = await _call(client, result, "state", "GET", f"{api}/state", headers=auth)
    if state is not None and state["complete"]:
        result.completed += 1


async def simulate_async(url: str, raters: int, *, listen_s: float = 0.3, replay: float = 0.2, seed: int = 0,
                         prefix: str = "load", time_limit_s: float | None = None) -> LoadResult:
    """Run `raters` simulated raters at once against the study served at `url` (see the module docstring)."""
    import httpx

    result = LoadResult(raters)
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=raters, max_keepalive_connections=raters)
    t0 = time.perf_counter()
    if time_limit_s is not None:
        result.deadline = t0 + time_limit_s
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(60.0)) as client:
        await asyncio.gather(*(_rater(client, f"{prefix}-{i:04d}", result, listen_s,
                                      random.Random(rng.getrandbits(64)), replay) for i in range(raters)))
    result.wall_s = time.perf_counter() - t0
    return result


def simulate(url: str, raters: int, **kwargs) -> LoadResult:
    """Blocking form of :func:`simulate_async`."""
    return asyncio.run(simulate_async(url, raters, **kwargs))


# -- serving a study in another process -----------------------------------------------------------------------------
def free_port() -> int:
    """A loopback TCP port free at the moment of asking."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, server: subprocess.Popen, log: Callable[[], str], workers: int = 1,
                       timeout_s: float = 180.0) -> None:
    """Wait until `server` (`vm-eval study serve` started with ``--workers``) answers HTTP and, with several
    workers, every worker has logged its start-up, so that a load sent next meets all of them. `log` returns the
    server's output so far. RuntimeError with that output if the server exits or the time runs out."""
    import httpx

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}: {log()[-3000:]}")
        try:
            httpx.get(f"{url}/tone.wav", timeout=2.0)
            if workers == 1 or log().count("Application startup complete") >= workers:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not start within {timeout_s:.0f} s: {log()[-3000:]}")
