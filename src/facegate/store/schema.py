"""The database schema, as SQLAlchemy Core tables (portable between SQLite and PostgreSQL).

Timestamps are epoch seconds (float, UTC), the unit Rekognition's wire format uses.
Embeddings are little-endian float32 bytes: the database is their source of truth; the
in-memory index is rebuilt from it at start.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

access_keys = Table(
    "access_keys",
    metadata,
    Column("access_key_id", String(32), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("secret_ciphertext", LargeBinary, nullable=False),
    Column("owner", String(255), nullable=False),  # the organisation's name
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("purpose", String(64)),  # added in v2: the one purpose this key may be used for
)

organizations = Table(
    "organizations",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("sector", String(32), nullable=False),
    Column("flags", Text, nullable=False),  # JSON list, e.g. ["approved_child_safety"]
    Column("created_at", Float, nullable=False),
)

policy_packs = Table(
    "policy_packs",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("enabled", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("recorded_at", Float, nullable=False),
    Column("organization", String(255)),
    Column("operation", String(64), nullable=False),
    Column("record", Text, nullable=False),  # canonical JSON, prev_hash inside
    Column("hash", String(64), nullable=False),
    Index("ix_audit_time", "recorded_at"),
)

consents = Table(
    "consents",
    metadata,
    Column("organization", String(255), primary_key=True),
    Column("consent_id", String(255), primary_key=True),
    Column("subject", String(255), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

collections = Table(
    "collections",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    # The owning account (an organisation, once governance assigns them): collection ids
    # are unique per owner, as they are per AWS account.
    Column("owner", String(255), nullable=False),
    Column("collection_id", String(255), nullable=False),
    Column("arn", String(2048), nullable=False),
    Column("face_model_version", String(255), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("owner", "collection_id", name="uq_collection_per_owner"),
)

collection_tags = Table(
    "collection_tags",
    metadata,
    Column("collection_pk", Integer, ForeignKey("collections.pk", ondelete="CASCADE"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(256), nullable=False),
)

faces = Table(
    "faces",
    metadata,
    Column("face_id", String(36), primary_key=True),
    Column("collection_pk", Integer, ForeignKey("collections.pk", ondelete="CASCADE"), nullable=False),
    Column("image_id", String(36), nullable=False),
    Column("external_image_id", String(255)),
    Column("user_id", String(128)),
    Column("box_left", Float, nullable=False),
    Column("box_top", Float, nullable=False),
    Column("box_width", Float, nullable=False),
    Column("box_height", Float, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("embedding", LargeBinary, nullable=False),  # exact float32 bytes; on pgvector also "descriptor" (v8, vector_column.py)
    Column("model_version", String(255), nullable=False),
    Column("image_fingerprint", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_faces_collection_face", "collection_pk", "face_id"),
    Index("ix_faces_external", "collection_pk", "external_image_id"),
    Index("ix_faces_user", "collection_pk", "user_id"),
    Index("ix_faces_fingerprint", "collection_pk", "image_fingerprint"),
    Index("ix_faces_created", "collection_pk", "created_at"),  # v5: the retention sweep finds due faces by age
)

users = Table(
    "users",
    metadata,
    Column("collection_pk", Integer, ForeignKey("collections.pk", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(128), primary_key=True),
    Column("created_at", Float, nullable=False),
)

idempotency_tokens = Table(
    "idempotency_tokens",
    metadata,
    Column("collection_pk", Integer, ForeignKey("collections.pk", ondelete="CASCADE"), primary_key=True),
    Column("operation", String(64), primary_key=True),
    Column("token", String(64), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)


index_log = Table(
    "index_log",
    metadata,
    # Every committed change to the searchable faces, in commit order (writers are
    # serialised), so every process's in-memory index can replay what others wrote.
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("collection_pk", Integer, nullable=False),  # no foreign key: a "drop" outlives its collection
    Column("kind", String(16), nullable=False),  # add | remove | set_user | drop
    Column("face_id", String(36), nullable=False),  # "" for drop
    Column("user_id", String(128)),
    Column("recorded_at", Float, nullable=False),  # for pruning (Store.prune_index_log)
    sqlite_autoincrement=True,
)


# -- v6: the oversight console ------------------------------------------------------------

console_accounts = Table(
    "console_accounts",
    metadata,
    # People who read the console (auditor), also record review decisions (reviewer), or also
    # change keys, organisations and packs (admin). Separate from API access keys.
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text, nullable=False),  # argon2id, never the password
    Column("created_at", Float, nullable=False),
)

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("session_digest", String(64), primary_key=True),  # SHA-256 of the cookie's id, never the id
    Column("account", String(64), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Index("ix_console_sessions_account", "account"),
)

console_login_failures = Table(
    "console_login_failures",
    metadata,
    # Recent failed logins, counted per account and per source address for rate limiting.
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("account", String(64), nullable=False),
    Column("source", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_console_failures_account", "account", "at"),
    Index("ix_console_failures_source", "source", "at"),
)

audit_facets = Table(
    "audit_facets",
    metadata,
    # A cache of fields of the hashed audit records, for the console's filters, counts and
    # review queue (governance/audit_index.py): rebuilt from audit_log at any time, never read
    # as the truth (every record shown is read, and re-checked, from audit_log).
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
    Column("time", Float),
    Column("key_id", String(128)),
    Column("organization", String(255)),
    Column("purpose", String(64)),
    Column("operation", String(64)),
    Column("decision", String(16)),
    Column("status", Integer),
    Column("case_reference", String(128)),
    Column("collection", String(2048)),
    Column("requests", Integer, nullable=False),  # how many requests the record stands for (its count)
    Column("matches", Integer),
    Column("top_similarity", Float),
    Column("review", String(16)),  # identifications under review: pending | confirmed | rejected | inconclusive
    Column("reviewed_by", Integer),  # on an identification: the seq of its review decision
    Column("review_of", Integer),  # on a review decision: the seq of the identification it decides
    Index("ix_facets_time", "time"),
    Index("ix_facets_key", "key_id", "seq"),
    Index("ix_facets_organization", "organization", "seq"),
    Index("ix_facets_purpose", "purpose", "seq"),
    Index("ix_facets_operation", "operation", "seq"),
    Index("ix_facets_decision", "decision", "seq"),
    Index("ix_facets_case", "case_reference", "seq"),
    Index("ix_facets_collection", "collection", "seq"),
    Index("ix_facets_review", "review", "seq"),
    Index("ix_facets_review_groups", "review", "organization", "purpose", "time"),  # covers the queue's per-group counts
)

audit_daily = Table(
    "audit_daily",
    metadata,
    # Requests per UTC day, organisation, purpose and kind (request | identification |
    # denial), kept with audit_facets, so the overview's plots never scan the whole log.
    Column("day", Integer, primary_key=True, autoincrement=False),  # days since 1970-01-01 (UTC)
    Column("organization", String(255), primary_key=True),  # "" for none
    Column("purpose", String(64), primary_key=True),  # "" for none
    Column("kind", String(16), primary_key=True),
    Column("requests", Integer, nullable=False),
)

review_candidates = Table(
    "review_candidates",
    metadata,
    # Each candidate a reviewer decided, kept with audit_facets from the decision records:
    # the observed false match rate per similarity band is the rejected share.
    Column("decision_seq", Integer, primary_key=True, autoincrement=False),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("organization", String(255)),
    Column("purpose", String(64)),
    Column("similarity", Float),  # 0-100
    Column("outcome", String(16), nullable=False),  # confirmed | rejected | inconclusive
)


# -- v7: stored-video jobs ----------------------------------------------------------------

video_jobs = Table(
    "video_jobs",
    metadata,
    # One StartFaceDetection or StartFaceSearch. A job is IN_PROGRESS until a worker sets
    # SUCCEEDED or FAILED; a worker holds it only while ``lease_until`` is in the future
    # (renewed as it runs), so a job whose worker was killed is claimed again once that passes.
    Column("job_id", String(64), primary_key=True),
    Column("owner", String(255), nullable=False),  # the organisation that started it
    Column("operation", String(32), nullable=False),  # FaceDetection | FaceSearch
    Column("client_token", String(64)),  # ClientRequestToken, when sent
    Column("request_hash", String(64), nullable=False),  # of the Start* parameters, for idempotency
    Column("params", Text, nullable=False),  # the Start* parameters, JSON
    Column("status", String(16), nullable=False),  # IN_PROGRESS | SUCCEEDED | FAILED
    Column("status_message", Text),
    Column("result", Text),  # JSON: VideoMetadata and the Faces or Persons, once SUCCEEDED
    Column("attempts", Integer, nullable=False),  # claims so far; bounded, so a poison video ends FAILED
    Column("lease_until", Float),  # epoch seconds; NULL: never claimed
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
    UniqueConstraint("owner", "operation", "client_token", name="uq_video_jobs_token"),
    Index("ix_video_jobs_status", "status", "lease_until"),
)
