"""The listening-test server of a study (`vm-eval study serve STUDY_DIR`).

Modules: `app` (:func:`create_app`), `study` (the verified study, opaque trial tokens, media lookup), `storage`
(SQLAlchemy models and repository), `rater` (pages and rater API), `admin` (progress, export), `listening`
(listening time from listen events), `schemas` (strict request bodies), `tone` (volume-check WAV).
"""
from studies.server.app import create_app, default_db_url
from studies.server.study import StudyServerError

__all__ = ["StudyServerError", "create_app", "default_db_url"]
