"""Every query the service layer needs, run on one connection inside one transaction.

Methods return plain records. Mutations of faces also record ``IndexChange``s, which
the store applies to the in-memory index once (and only if) the transaction commits.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from sqlalchemy import Connection, and_, delete, func, insert, select, update

from facegate.store import schema
from facegate.store.face_index import IndexChange
from facegate.store.records import AccessKeyRecord, CollectionRecord, FaceRecord, UserRecord


def _collection(row) -> CollectionRecord:  # type: ignore[no-untyped-def]
    return CollectionRecord(row.pk, row.owner, row.collection_id, row.arn, row.face_model_version, row.created_at)


def _face(row) -> FaceRecord:  # type: ignore[no-untyped-def]
    return FaceRecord(
        face_id=row.face_id,
        collection_pk=row.collection_pk,
        image_id=row.image_id,
        external_image_id=row.external_image_id,
        user_id=row.user_id,
        box=(row.box_left, row.box_top, row.box_width, row.box_height),
        confidence=row.confidence,
        embedding=np.frombuffer(row.embedding, dtype="<f4"),
        model_version=row.model_version,
        image_fingerprint=row.image_fingerprint,
        created_at=row.created_at,
    )


class Transaction:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.index_changes: list[IndexChange] = []

    # -- access keys ---------------------------------------------------------------------

    def create_access_key(self, access_key_id: str, name: str, secret_ciphertext: bytes, owner: str) -> None:
        self.connection.execute(
            insert(schema.access_keys).values(
                access_key_id=access_key_id,
                name=name,
                secret_ciphertext=secret_ciphertext,
                owner=owner,
                created_at=time.time(),
            )
        )

    def access_key_secret(self, access_key_id: str) -> tuple[AccessKeyRecord, bytes] | None:
        row = self.connection.execute(
            select(schema.access_keys).where(schema.access_keys.c.access_key_id == access_key_id)
        ).first()
        if row is None:
            return None
        return AccessKeyRecord(row.access_key_id, row.name, row.owner, row.created_at, row.revoked_at), row.secret_ciphertext

    def list_access_keys(self) -> list[AccessKeyRecord]:
        rows = self.connection.execute(select(schema.access_keys).order_by(schema.access_keys.c.created_at))
        return [AccessKeyRecord(r.access_key_id, r.name, r.owner, r.created_at, r.revoked_at) for r in rows]

    def count_access_keys(self) -> int:
        return self.connection.execute(select(func.count()).select_from(schema.access_keys)).scalar_one()

    # -- collections ---------------------------------------------------------------------

    def create_collection(self, owner: str, collection_id: str, arn: str, face_model_version: str) -> CollectionRecord:
        now = time.time()
        pk = self.connection.execute(
            insert(schema.collections)
            .values(owner=owner, collection_id=collection_id, arn=arn, face_model_version=face_model_version, created_at=now)
            .returning(schema.collections.c.pk)
        ).scalar_one()
        return CollectionRecord(pk, owner, collection_id, arn, face_model_version, now)

    def get_collection(self, owner: str, collection_id: str) -> CollectionRecord | None:
        c = schema.collections.c
        row = self.connection.execute(
            select(schema.collections).where(and_(c.owner == owner, c.collection_id == collection_id))
        ).first()
        return None if row is None else _collection(row)

    def get_collection_by_arn(self, arn: str) -> CollectionRecord | None:
        row = self.connection.execute(select(schema.collections).where(schema.collections.c.arn == arn)).first()
        return None if row is None else _collection(row)

    def list_collections(self, owner: str, after: str | None, limit: int) -> list[CollectionRecord]:
        c = schema.collections.c
        query = select(schema.collections).where(c.owner == owner)
        if after is not None:
            query = query.where(c.collection_id > after)
        rows = self.connection.execute(query.order_by(c.collection_id).limit(limit))
        return [_collection(r) for r in rows]

    def delete_collection(self, collection: CollectionRecord) -> None:
        # Explicit child deletes keep PostgreSQL and SQLite alike even without cascades.
        for table in (schema.faces, schema.users, schema.collection_tags, schema.idempotency_tokens):
            self.connection.execute(delete(table).where(table.c.collection_pk == collection.pk))
        self.connection.execute(delete(schema.collections).where(schema.collections.c.pk == collection.pk))
        self.index_changes.append(IndexChange("drop", collection.pk))

    # -- tags ----------------------------------------------------------------------------

    def get_tags(self, collection_pk: int) -> dict[str, str]:
        t = schema.collection_tags.c
        rows = self.connection.execute(select(t.key, t.value).where(t.collection_pk == collection_pk).order_by(t.key))
        return {key: value for key, value in rows}

    def set_tags(self, collection_pk: int, tags: dict[str, str]) -> None:
        t = schema.collection_tags.c
        for key, value in tags.items():
            self.connection.execute(delete(schema.collection_tags).where(and_(t.collection_pk == collection_pk, t.key == key)))
            self.connection.execute(insert(schema.collection_tags).values(collection_pk=collection_pk, key=key, value=value))

    def remove_tags(self, collection_pk: int, keys: Sequence[str]) -> None:
        t = schema.collection_tags.c
        if keys:
            self.connection.execute(
                delete(schema.collection_tags).where(and_(t.collection_pk == collection_pk, t.key.in_(list(keys))))
            )

    # -- faces ---------------------------------------------------------------------------

    def insert_faces(self, records: Sequence[FaceRecord]) -> None:
        if not records:
            return
        rows = [
            {
                "face_id": r.face_id,
                "collection_pk": r.collection_pk,
                "image_id": r.image_id,
                "external_image_id": r.external_image_id,
                "user_id": r.user_id,
                "box_left": r.box[0],
                "box_top": r.box[1],
                "box_width": r.box[2],
                "box_height": r.box[3],
                "confidence": r.confidence,
                "embedding": np.asarray(r.embedding, dtype="<f4").tobytes(),
                "model_version": r.model_version,
                "image_fingerprint": r.image_fingerprint,
                "created_at": r.created_at,
            }
            for r in records
        ]
        self.connection.execute(insert(schema.faces), rows)
        self.index_changes.extend(
            IndexChange("add", r.collection_pk, r.face_id, np.asarray(r.embedding, np.float32), r.user_id) for r in records
        )

    def get_faces(self, collection_pk: int, face_ids: Sequence[str]) -> dict[str, FaceRecord]:
        f = schema.faces.c
        if not face_ids:
            return {}
        rows = self.connection.execute(
            select(schema.faces).where(and_(f.collection_pk == collection_pk, f.face_id.in_(list(face_ids))))
        )
        return {r.face_id: _face(r) for r in rows}

    def list_faces(
        self,
        collection_pk: int,
        after: str | None,
        limit: int,
        user_id: str | None = None,
        face_ids: Sequence[str] | None = None,
    ) -> list[FaceRecord]:
        f = schema.faces.c
        query = select(schema.faces).where(f.collection_pk == collection_pk)
        if after is not None:
            query = query.where(f.face_id > after)
        if user_id is not None:
            query = query.where(f.user_id == user_id)
        if face_ids is not None:
            query = query.where(f.face_id.in_(list(face_ids)))
        return [_face(r) for r in self.connection.execute(query.order_by(f.face_id).limit(limit))]

    def faces_by_fingerprint(self, collection_pk: int, fingerprint: str, external_image_id: str | None) -> list[FaceRecord]:
        f = schema.faces.c
        same_external = f.external_image_id.is_(None) if external_image_id is None else f.external_image_id == external_image_id
        rows = self.connection.execute(
            select(schema.faces)
            .where(and_(f.collection_pk == collection_pk, f.image_fingerprint == fingerprint, same_external))
            .order_by(f.created_at, f.face_id)
        )
        return [_face(r) for r in rows]

    def faces_created_before(self, collection_pk: int, cutoff: float) -> list[FaceRecord]:
        f = schema.faces.c
        rows = self.connection.execute(
            select(schema.faces).where(and_(f.collection_pk == collection_pk, f.created_at < cutoff))
        )
        return [_face(r) for r in rows]

    def count_faces(self, collection_pk: int) -> int:
        f = schema.faces.c
        return self.connection.execute(select(func.count()).where(f.collection_pk == collection_pk)).scalar_one()

    def delete_faces(self, collection_pk: int, face_ids: Sequence[str]) -> None:
        f = schema.faces.c
        if face_ids:
            self.connection.execute(delete(schema.faces).where(and_(f.collection_pk == collection_pk, f.face_id.in_(list(face_ids)))))
        self.index_changes.extend(IndexChange("remove", collection_pk, face_id) for face_id in face_ids)

    def set_face_user(self, collection_pk: int, face_ids: Sequence[str], user_id: str | None) -> None:
        f = schema.faces.c
        if face_ids:
            self.connection.execute(
                update(schema.faces).where(and_(f.collection_pk == collection_pk, f.face_id.in_(list(face_ids)))).values(user_id=user_id)
            )
        self.index_changes.extend(IndexChange("set_user", collection_pk, face_id, user_id=user_id) for face_id in face_ids)

    # -- users ---------------------------------------------------------------------------

    def create_user(self, collection_pk: int, user_id: str) -> None:
        self.connection.execute(insert(schema.users).values(collection_pk=collection_pk, user_id=user_id, created_at=time.time()))

    def get_user(self, collection_pk: int, user_id: str) -> UserRecord | None:
        u = schema.users.c
        row = self.connection.execute(select(schema.users).where(and_(u.collection_pk == collection_pk, u.user_id == user_id))).first()
        return None if row is None else UserRecord(row.collection_pk, row.user_id, row.created_at)

    def list_users(self, collection_pk: int, after: str | None, limit: int) -> list[UserRecord]:
        u = schema.users.c
        query = select(schema.users).where(u.collection_pk == collection_pk)
        if after is not None:
            query = query.where(u.user_id > after)
        rows = self.connection.execute(query.order_by(u.user_id).limit(limit))
        return [UserRecord(r.collection_pk, r.user_id, r.created_at) for r in rows]

    def count_users(self, collection_pk: int) -> int:
        return self.connection.execute(select(func.count()).where(schema.users.c.collection_pk == collection_pk)).scalar_one()

    def delete_user(self, collection_pk: int, user_id: str) -> None:
        u, f = schema.users.c, schema.faces.c
        face_ids = [
            r.face_id
            for r in self.connection.execute(select(f.face_id).where(and_(f.collection_pk == collection_pk, f.user_id == user_id)))
        ]
        self.set_face_user(collection_pk, face_ids, None)
        self.connection.execute(delete(schema.users).where(and_(u.collection_pk == collection_pk, u.user_id == user_id)))

    def count_user_faces(self, collection_pk: int, user_id: str) -> int:
        f = schema.faces.c
        return self.connection.execute(
            select(func.count()).where(and_(f.collection_pk == collection_pk, f.user_id == user_id))
        ).scalar_one()

    # -- idempotency ---------------------------------------------------------------------

    def get_idempotent(self, collection_pk: int, operation: str, token: str) -> tuple[str, str] | None:
        """(request hash, stored response JSON) for a token already used, else None."""
        i = schema.idempotency_tokens.c
        row = self.connection.execute(
            select(i.request_hash, i.response).where(and_(i.collection_pk == collection_pk, i.operation == operation, i.token == token))
        ).first()
        return None if row is None else (row.request_hash, row.response)

    def put_idempotent(self, collection_pk: int, operation: str, token: str, request_hash: str, response: str) -> None:
        self.connection.execute(
            insert(schema.idempotency_tokens).values(
                collection_pk=collection_pk,
                operation=operation,
                token=token,
                request_hash=request_hash,
                response=response,
                created_at=time.time(),
            )
        )
