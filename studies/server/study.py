"""The study as the server sees it: verified files, the design's trials per slot, stimulus keys, opaque tokens.

Nothing here is sent to raters as is. Raters see a trial through its *token* (an HMAC of the design's trial id
under a secret kept in the database, so it cannot be reversed or guessed from the design's public construction)
and media through stimulus keys (content hashes, :func:`studies.stimuli.stimulus_key`), looked up in
``stimuli.json``; file paths are never built from request input.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from pathlib import Path

from studies.config import StudyConfig, load_config
from studies.design import Design, Trial
from studies.layout import STIMULI_DIR, verify_study
from vm_eval.errors import UserError

KEY_RE = re.compile(r"^[0-9a-f]{16,128}$")


class StudyServerError(UserError, ValueError):
    """The study cannot be served (incomplete, changed, or a database of another version of it)."""


@dataclass(frozen=True)
class ServedStudy:
    dir: Path
    manifest_sha256: str
    config: StudyConfig
    design: Design
    media: dict[str, Path]  # stimulus key -> file (inside STUDY_DIR/stimuli)
    key_of: dict[tuple[str, str], str]  # (clip id, system) -> stimulus key
    duration_of: dict[str, float]  # stimulus key -> duration in seconds (stimuli.json)
    sha256_of: dict[str, str]  # stimulus key -> sha256 of the file's bytes (the media ETag)
    secret: bytes
    token_of: dict[str, str]  # trial id -> token
    trial_of: dict[str, Trial]  # token -> trial

    @classmethod
    def load(cls, study_dir: str | Path, secret: bytes) -> "ServedStudy":
        """Load a complete study (raises :class:`StudyServerError` unless :func:`verify_study` passes)."""
        d = Path(study_dir).resolve()
        try:
            man = verify_study(d)
        except ValueError as e:
            raise StudyServerError(f"refusing to serve: {e}") from None
        config = load_config(d)
        design = Design.from_json(json.loads((d / "design.json").read_text()))
        stim_root = (d / STIMULI_DIR).resolve()
        media: dict[str, Path] = {}
        key_of: dict[tuple[str, str], str] = {}
        duration_of: dict[str, float] = {}
        sha256_of: dict[str, str] = {}
        for s in json.loads((d / "stimuli.json").read_text())["stimuli"]:
            key = str(s["key"])
            path = (d / s["file"]).resolve()
            if not KEY_RE.match(key) or path.parent != stim_root or path.name != f"{key}.mp4":
                raise StudyServerError(f"refusing to serve: stimuli.json lists an unexpected stimulus {s['file']!r}")
            media[key] = path
            key_of[(s["clip_id"], s["system"])] = key
            duration_of[key] = float(s["duration_s"])
            sha256_of[key] = str(s["sha256"])
        missing = [(t.clip_id, s) for t in design.all_trials() for s in (t.system_left, t.system_right)
                   if (t.clip_id, s) not in key_of]
        if missing:
            raise StudyServerError(f"refusing to serve: no stimulus for {missing[0]} (and {len(missing) - 1} more)")
        absent = [k for k, p in media.items() if not p.is_file()]
        if absent:
            raise StudyServerError(f"refusing to serve: {len(absent)} stimulus file(s) missing, e.g. {absent[0]}.mp4")
        token_of = {t.trial_id: cls._token(secret, man["content_sha256"], t.trial_id) for t in design.all_trials()}
        trial_of = {token_of[t.trial_id]: t for t in design.all_trials()}
        return cls(d, man["content_sha256"], config, design, media, key_of, duration_of, sha256_of, secret, token_of,
                   trial_of)

    @staticmethod
    def _token(secret: bytes, manifest: str, trial_id: str) -> str:
        return "x" + hmac.new(secret, f"{manifest}|{trial_id}".encode(), hashlib.sha256).hexdigest()[:24]

    @property
    def n_slots(self) -> int:
        return self.design.raters

    def trials(self, slot: int) -> tuple[Trial, ...]:
        return self.design.trials[slot]

    @property
    def answer_options(self) -> list[str]:
        return ["A", "B", "tie"] if self.config.allow_ties else ["A", "B"]

    def sides(self, trial: Trial) -> dict[str, str]:
        """Position -> system: the design's left system is A, the right one B."""
        return {"A": trial.system_left, "B": trial.system_right}

    def duration_s(self, trial: Trial) -> float:
        """The trial's media duration in seconds (both sides are fitted to the clip: the shorter if they differ)."""
        return min(self.duration_of[self.key_of[(trial.clip_id, s)]] for s in self.sides(trial).values())

    def session(self, rater_id: str) -> str:
        """The rater's session credential: ``<rater id>.<HMAC-SHA256 of the id under the server secret>``."""
        sig = hmac.new(self.secret, f"rater-session|{self.manifest_sha256}|{rater_id}".encode(), hashlib.sha256)
        return f"{rater_id}.{sig.hexdigest()[:40]}"

    def catch_expected(self, trial: Trial, question_id: str) -> str | None:
        side = trial.expected_answer(self.config.question(question_id))
        return {"left": "A", "right": "B"}.get(side) if side else None
