"""Storage of the listening-test server: SQLAlchemy 2 models and a small repository over them.

Tables: ``raters`` (pseudonymous id, design slot, consent / volume-check / completion times, completion code),
``assignments`` (rater -> design rater index, the slot), ``votes`` (one answer of one rater to one question of
one trial, with the systems recorded server-side and the study's manifest hash), ``listen_events`` (play / pause /
ended / seek of one soundtrack, with media, client and server time) and ``server_meta`` (key/value: the token
secret and the manifest hash of the study this database belongs to).

SQLite is the default (``STUDY_DIR/votes.sqlite``) in WAL mode with a busy timeout, so readers (admin export) never
block the writer and concurrent writers wait instead of failing; it serves one server process (slot assignment is
locked in that process). PostgreSQL (``postgresql+psycopg://...``) serves several worker processes: everything that
must happen once across them is locked in the database (see :class:`Repository`). Other SQLAlchemy URLs work with
one process.
"""
from __future__ import annotations

import secrets
import threading
import zlib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Boolean, DateTime, Float, ForeignKey, Integer, String, TypeDecorator, UniqueConstraint, create_engine, event,
    func, select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

from vm_eval.errors import UserError

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Keys of the PostgreSQL transaction-level advisory locks (pg_advisory_xact_lock takes a bigint): one for schema
# creation, one for slot assignment. Derived from names so that another application sharing the database is
# unlikely to pick the same numbers.
SCHEMA_LOCK = zlib.crc32(b"vm-eval study schema")
ENROL_LOCK = zlib.crc32(b"vm-eval study enrol")


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite returns naive ones; they are read back as UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


class Base(DeclarativeBase):
    pass


class Rater(Base):
    __tablename__ = "raters"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # pseudonymous, validated [A-Za-z0-9_-]{1,64}
    slot: Mapped[int] = mapped_column(Integer, index=True)  # design rater index
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    volume_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completion_code: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Assignment(Base):
    __tablename__ = "assignments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rater_id: Mapped[str] = mapped_column(ForeignKey("raters.id"), unique=True)
    slot: Mapped[int] = mapped_column(Integer, index=True)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime)


class VoteRow(Base):
    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("rater_id", "trial_id", "question", name="uq_vote_rater_trial_question"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rater_id: Mapped[str] = mapped_column(ForeignKey("raters.id"), index=True)
    trial_id: Mapped[str] = mapped_column(String(64), index=True)  # the design's trial id (never sent to raters)
    clip_id: Mapped[str] = mapped_column(String(256))
    question: Mapped[str] = mapped_column(String(40))
    answer: Mapped[str] = mapped_column(String(3))  # "A", "B" or "tie" (a position, not a system)
    system_a: Mapped[str] = mapped_column(String(256))  # recorded server-side from the design
    system_b: Mapped[str] = mapped_column(String(256))
    is_catch: Mapped[bool] = mapped_column(Boolean)
    catch_expected: Mapped[str | None] = mapped_column(String(1), nullable=True)  # "A" / "B" / None
    submission_id: Mapped[str] = mapped_column(String(64))
    listen_a_s: Mapped[float] = mapped_column(Float)
    listen_b_s: Mapped[float] = mapped_column(Float)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    client_time: Mapped[float | None] = mapped_column(Float, nullable=True)  # ms since the epoch, client clock
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ListenEvent(Base):
    __tablename__ = "listen_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rater_id: Mapped[str] = mapped_column(ForeignKey("raters.id"), index=True)
    trial_id: Mapped[str] = mapped_column(String(64), index=True)
    side: Mapped[str] = mapped_column(String(1))
    event: Mapped[str] = mapped_column(String(8))
    media_time: Mapped[float] = mapped_column(Float)
    client_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    server_time: Mapped[float] = mapped_column(Float)  # seconds since the epoch, server clock


class RaterCrowd(Base):
    """Crowd-platform ids and the headphone-screening result of a rater (helper table of the crowd flow,
    :mod:`studies.server.crowd`). Written at the Prolific entry, before consent creates the ``raters`` row, hence
    no foreign key. A table of its own, so databases made before it existed gain it without a migration."""

    __tablename__ = "rater_crowd"

    rater_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    prolific_pid: Mapped[str | None] = mapped_column(String(24), nullable=True)
    prolific_study_id: Mapped[str | None] = mapped_column(String(24), nullable=True)
    prolific_session_id: Mapped[str | None] = mapped_column(String(24), nullable=True)
    entered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    screening_score: Mapped[int | None] = mapped_column(Integer, nullable=True)  # correct answers
    screening_trials: Mapped[int | None] = mapped_column(Integer, nullable=True)
    screening_passed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    screening_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Meta(Base):
    __tablename__ = "server_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class DatabaseUnavailable(UserError, RuntimeError):
    """The votes database cannot be opened (wrong URL, server down, no permission)."""


def normalise_url(url: str) -> str:
    """`url` with PostgreSQL's driver made explicit: a bare ``postgresql://`` means psycopg (v3, installed), not
    SQLAlchemy's default psycopg2 (not installed)."""
    u = make_url(url)
    if u.drivername != "postgresql":
        return url  # as given (re-rendering would escape SQLite's ":memory:")
    return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def is_multiprocess_safe(url: str) -> bool:
    """Whether several server processes may share the database at `url` (PostgreSQL only: slot assignment and the
    other once-only steps take database locks there; elsewhere the lock lives in one process)."""
    return make_url(url).get_backend_name() == "postgresql"


def make_engine(url: str) -> Engine:
    """An engine for `url` (see :func:`normalise_url`); SQLite connections get WAL mode, a busy timeout and foreign
    keys on connect."""
    url = normalise_url(url)
    kwargs: dict[str, Any] = {}
    sqlite = url.startswith("sqlite")
    if sqlite:
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool  # one shared in-memory database
    engine = create_engine(url, **kwargs)
    if sqlite:
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    return engine


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


class VoteConflict(Exception):
    """A question of this trial was already answered differently (`question`, `stored`)."""

    def __init__(self, question: str, stored: str):
        super().__init__(question, stored)
        self.question, self.stored = question, stored


class Repository:
    """The few queries the server needs, each in its own transaction.

    What must happen once although several requests may race for it is serialised: slot assignment (two raters
    arriving together never take the same free slot; one new rater id arriving in two processes at once stays one
    rater) by a lock in this process plus, on PostgreSQL, a transaction-level advisory lock that every worker
    process takes; completion codes and flow times by a row lock on the rater (``SELECT ... FOR UPDATE``, a no-op
    on SQLite, where one process serves). Unique constraints back each of them: a conflicting insert is retried
    against the row that won."""

    def __init__(self, url: str):
        self.engine = make_engine(url)
        self.postgres = self.engine.dialect.name == "postgresql"
        try:
            self._create_schema()
        except OperationalError as e:  # the first connection: a wrong URL or an unreachable server shows here
            where = self.engine.url.render_as_string(hide_password=True)
            reason = str(e.orig).strip().splitlines()[0] if e.orig is not None else str(e)
            raise DatabaseUnavailable(f"cannot open the votes database {where}: {reason}") from None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Reads are one statement each (read committed either way): on PostgreSQL they run in autocommit, one round
        # trip to the server instead of three (BEGIN, SELECT, ROLLBACK); a request makes several.
        self.reads = (sessionmaker(self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)
                      if self.postgres else self.sessions)
        self._assign_lock = threading.Lock()

    def _create_schema(self) -> None:
        if not self.postgres:
            Base.metadata.create_all(self.engine)
            return
        # Workers start at once; concurrent CREATE TABLE of one name collide in PostgreSQL's catalog (a unique
        # violation on pg_type), so one creates the tables while the others wait and then find them. DDL is
        # transactional there: the tables appear whole.
        with self.engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK)))
            Base.metadata.create_all(conn)

    def _db_lock(self, s: Session, key: int) -> None:
        """Take the advisory lock `key` until the end of the transaction of `s` (PostgreSQL; elsewhere nothing)."""
        if self.postgres:
            s.execute(select(func.pg_advisory_xact_lock(key)))

    # -- meta -----------------------------------------------------------------------------------------------------
    def meta(self, key: str, default_factory=None) -> str | None:
        """The stored value of `key`; if absent and `default_factory` is given, store and return its value. When
        several processes store a default at once, the first insert wins and all of them return it."""
        with self.reads() as s:
            row = s.get(Meta, key)
        if row is not None or default_factory is None:
            return row.value if row is not None else None
        try:
            with self.sessions.begin() as s:
                s.add(Meta(key=key, value=default_factory()))
        except IntegrityError:  # another worker stored it first: that value is the one every worker uses
            pass
        with self.reads() as s:
            return s.get(Meta, key).value

    def manifests_with_votes(self) -> list[str]:
        with self.reads() as s:
            return list(s.scalars(select(VoteRow.manifest_sha256).distinct()))

    # -- raters ---------------------------------------------------------------------------------------------------
    def rater(self, rater_id: str) -> Rater | None:
        with self.reads() as s:
            return s.get(Rater, rater_id)

    def enrol(self, rater_id: str, n_slots: int, manifest: str, now: float) -> Rater:
        """The rater, created with a slot if new: the slot with the fewest raters, lowest index on ties. A
        returning rater keeps their slot."""
        r = self.rater(rater_id)
        if r is not None:  # the common case takes no lock
            return r
        try:
            with self._assign_lock, self.sessions.begin() as s:
                self._db_lock(s, ENROL_LOCK)  # held until commit: the next enrolment sees this one's rows
                r = s.get(Rater, rater_id)
                if r is not None:  # enrolled by another process while this one waited for the lock
                    return r
                used = dict(s.execute(select(Assignment.slot, func.count()).group_by(Assignment.slot)).all())
                slot = min(range(n_slots), key=lambda i: (used.get(i, 0), i))
                r = Rater(id=rater_id, slot=slot, created_at=utc(now))
                s.add(r)
                s.flush()
                s.add(Assignment(rater_id=rater_id, slot=slot, manifest_sha256=manifest, assigned_at=utc(now)))
                return r
        except IntegrityError:
            # Only without the database lock (another backend shared by processes): the same id was inserted
            # between the check and the insert. The row that won is the rater.
            r = self.rater(rater_id)
            if r is None:
                raise
            return r

    def set_time(self, rater_id: str, field: str, now: float, only_if_unset: bool = True) -> Rater:
        with self.sessions.begin() as s:
            r = s.get(Rater, rater_id, with_for_update=True)
            if getattr(r, field) is None or not only_if_unset:
                setattr(r, field, utc(now))
            return r

    def complete(self, rater_id: str, now: float) -> Rater:
        """Mark the rater complete with a fresh random completion code (kept if already complete). The row lock
        makes a second request, in any process, wait and keep the first code instead of replacing it."""
        with self.sessions.begin() as s:
            r = s.get(Rater, rater_id, with_for_update=True)
            if r.completion_code is None:
                alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes are typed by hand
                r.completion_code = "".join(secrets.choice(alphabet) for _ in range(10))
                r.completed_at = utc(now)
            return r

    def raters(self) -> list[Rater]:
        with self.reads() as s:
            return list(s.scalars(select(Rater).order_by(Rater.created_at, Rater.id)))

    # -- listen events --------------------------------------------------------------------------------------------
    def add_events(self, rater_id: str, trial_id: str, events: Iterable[dict], now: float) -> int:
        rows = [ListenEvent(rater_id=rater_id, trial_id=trial_id, server_time=now, **e) for e in events]
        with self.sessions.begin() as s:
            s.add_all(rows)
        return len(rows)

    def events(self, rater_id: str, trial_id: str) -> list[ListenEvent]:
        with self.reads() as s:
            return list(s.scalars(select(ListenEvent).where(ListenEvent.rater_id == rater_id,
                                                            ListenEvent.trial_id == trial_id)
                                  .order_by(ListenEvent.id)))

    # -- votes ----------------------------------------------------------------------------------------------------
    def answers(self, rater_id: str) -> dict[str, dict[str, str]]:
        """trial id -> {question: answer} of the rater's stored votes."""
        out: dict[str, dict[str, str]] = {}
        with self.reads() as s:
            for t, q, a in s.execute(select(VoteRow.trial_id, VoteRow.question, VoteRow.answer)
                                     .where(VoteRow.rater_id == rater_id)):
                out.setdefault(t, {})[q] = a
        return out

    def add_votes(self, rows: Sequence[dict]) -> tuple[list[str], list[str]]:
        """Store votes atomically: (new questions, duplicate questions). A question already answered with the same
        answer is a duplicate (not stored again); with another answer it raises :class:`VoteConflict` and nothing
        is stored. The unique constraint catches a concurrent replay between the check and the insert."""
        if not rows:
            return [], []
        rater_id, trial_id = rows[0]["rater_id"], rows[0]["trial_id"]
        try:
            with self.sessions.begin() as s:
                stored = dict(s.execute(select(VoteRow.question, VoteRow.answer).where(
                    VoteRow.rater_id == rater_id, VoteRow.trial_id == trial_id)).all())
                new, dup = [], []
                for row in rows:
                    q = row["question"]
                    if q in stored:
                        if stored[q] != row["answer"]:
                            raise VoteConflict(q, stored[q])
                        dup.append(q)
                    else:
                        s.add(VoteRow(**row))
                        new.append(q)
            return new, dup
        except IntegrityError:  # a concurrent request stored the same question first: re-check against it
            return self.add_votes(rows)

    def votes(self, manifest: str | None = None) -> list[VoteRow]:
        with self.reads() as s:
            q = select(VoteRow).order_by(VoteRow.id)
            if manifest is not None:
                q = q.where(VoteRow.manifest_sha256 == manifest)
            return list(s.scalars(q))

    # -- crowd platforms / screening (studies.server.crowd) ----------------------------------------------------------
    def crowd(self, rater_id: str) -> RaterCrowd | None:
        with self.reads() as s:
            return s.get(RaterCrowd, rater_id)

    def crowd_all(self) -> dict[str, RaterCrowd]:
        with self.reads() as s:
            return {r.rater_id: r for r in s.scalars(select(RaterCrowd))}

    def _update_crowd(self, rater_id: str, change: Callable[[RaterCrowd], None]) -> RaterCrowd:
        """Apply `change` to the rater's crowd row under a row lock, creating the row on first use (a concurrent
        first insert that wins is retried as an update of its row)."""
        try:
            with self.sessions.begin() as s:
                r = s.get(RaterCrowd, rater_id, with_for_update=True)
                if r is None:
                    r = RaterCrowd(rater_id=rater_id)
                    s.add(r)
                change(r)
                return r
        except IntegrityError:
            return self._update_crowd(rater_id, change)

    def set_prolific(self, rater_id: str, pid: str, study_id: str, session_id: str, now: float) -> RaterCrowd:
        """Record the Prolific ids of an entry (the latest session id wins: a returning participant)."""
        def change(r: RaterCrowd) -> None:
            r.prolific_pid, r.prolific_study_id, r.prolific_session_id = pid, study_id, session_id
            r.entered_at = utc(now)
        return self._update_crowd(rater_id, change)

    def set_screening(self, rater_id: str, score: int, trials: int, passed: bool, now: float) -> RaterCrowd:
        """Store a screening result; the first one is kept (a retry cannot replace a failed screening)."""
        def change(r: RaterCrowd) -> None:
            if r.screening_at is None:
                r.screening_score, r.screening_trials, r.screening_passed = score, trials, passed
                r.screening_at = utc(now)
        return self._update_crowd(rater_id, change)
