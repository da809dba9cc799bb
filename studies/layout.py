"""The study folder as readers see it: file names, and the completion check.

This is the read side shared by `vm-eval study create` (:mod:`studies.create`, which writes the folder), the
study server (:mod:`studies.server`) and the analysis (:mod:`studies.analyze`). Readers import it instead of the
create pipeline, so serving or analysing a study loads none of the run store, the runner or the stimulus
encoder.

    stimuli/<key>.mp4        the stimuli (plus ``<key>.mp4.json`` cache sidecars)
    study.yaml               the validated config
    design.json              :meth:`studies.design.Design.to_json`
    stimuli.json             per (clip, system): key, file, sha256, run id, loudness record, duration
    systems.json             label -> run id, run path, model, model_info, checkpoints, role (compared | catch)
    manifest.json            written last: sha256 of the four files above and one hash over them; the study is
                             complete only when it exists and matches (:func:`verify_study`)
"""
from __future__ import annotations

import json
from pathlib import Path

from studies.config import STUDY_FILE
from vm_eval.fsutil import file_sha256, json_sha256
from vm_eval.errors import UserError

COMPLETE_FILE = "manifest.json"
STUDY_FILES = (STUDY_FILE, "design.json", "stimuli.json", "systems.json")  # the files the manifest hashes
STIMULI_DIR = "stimuli"
FORMAT_VERSION = 1


class StudyIncompleteError(UserError, ValueError):
    """The folder is not a complete study: no manifest (an interrupted create), files missing, or files changed
    after the manifest was written."""


def files_hash(study_dir: str | Path) -> dict[str, str]:
    """{file name: sha256} of the study files the manifest covers (:data:`STUDY_FILES`)."""
    d = Path(study_dir)
    return {name: file_sha256(d / name) for name in STUDY_FILES}


def verify_study(study_dir: str | Path) -> dict:
    """The completion manifest of a study, after checking every file it hashes; raises
    :class:`StudyIncompleteError` when the study is incomplete (interrupted create) or was changed since."""
    d = Path(study_dir)
    try:
        man = json.loads((d / COMPLETE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        raise StudyIncompleteError(f"{d} is not a complete study (no readable {COMPLETE_FILE}; was `vm-eval study "
                                   "create` interrupted?)") from None
    missing = [n for n in STUDY_FILES if not (d / n).is_file()]
    if missing:
        raise StudyIncompleteError(f"{d}: study files missing: {', '.join(missing)}")
    now = files_hash(d)
    changed = [n for n in STUDY_FILES if man.get("files", {}).get(n) != now[n]]
    if changed or man.get("content_sha256") != json_sha256(now):
        raise StudyIncompleteError(f"{d}: files changed after the study was created: "
                                   f"{', '.join(changed) or COMPLETE_FILE}")
    return man
