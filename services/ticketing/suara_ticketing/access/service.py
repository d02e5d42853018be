"""API tokens: created and revoked by admins, kept as SHA-256 hashes, resolved to a principal per request."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from suara_shared import db
from suara_shared.events import new_id, utcnow

from .models import Principal, Role

TOKEN_PREFIX = "sua_"  # noqa: S105 - marks Suara tokens (secret scanners find them), not a secret


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class NameTaken(Exception):
    """An active token already carries that name."""


class TokenService:
    """Every read and write of API tokens."""

    def __init__(self, *, database: db.Database) -> None:
        self.tokens = database["api_tokens"]

    async def ensure_indexes(self) -> None:
        await self.tokens.create_index([("hash", 1)], unique=True)
        await self.tokens.create_index([("department", 1), ("role", 1)])

    async def create(
        self, *, name: str, role: Role, department: str | None, created_by: str
    ) -> tuple[dict[str, Any], str]:
        """Store a new token's hash and return the record with the token itself (shown once)."""
        if await self.tokens.find_one({"name": name, "revoked_at": None}, {"_id": 1}) is not None:
            raise NameTaken(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        doc = {
            "_id": new_id(),
            "hash": token_hash(token),
            "name": name,
            "role": role.value,
            "department": department,
            "created_at": utcnow(),
            "created_by": created_by,
            "revoked_at": None,
        }
        await self.tokens.insert_one(doc)
        return doc, token

    async def all(self) -> list[dict[str, Any]]:
        return await self.tokens.find({}, {"hash": 0}).sort([("created_at", 1), ("_id", 1)]).to_list(1000)

    async def revoke(self, token_id: str) -> dict[str, Any] | None:
        return await self.tokens.find_one_and_update(
            {"_id": token_id},
            {"$set": {"revoked_at": utcnow()}},
            projection={"hash": 0},
            return_document=db.ReturnDocument.AFTER,
        )

    async def resolve(self, token: str) -> Principal | None:
        """The principal of an active token, or None."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        doc = await self.tokens.find_one({"hash": token_hash(token), "revoked_at": None})
        if doc is None:
            return None
        return Principal(
            name=doc["name"], role=Role(doc["role"]), department=doc.get("department"), token_id=doc["_id"]
        )

    async def agents_of(self, department: str) -> list[str]:
        """Names of the active agents of a department, in a stable order (for round robin)."""
        docs = await self.tokens.find(
            {"department": department, "role": Role.AGENT.value, "revoked_at": None}, {"name": 1}
        ).to_list(500)
        return sorted({d["name"] for d in docs})
