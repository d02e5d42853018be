"""Roles, the acting principal, and the token API's models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Role(StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of the ticket API: a name (shown in the audit trail), a role and maybe a department."""

    name: str
    role: Role
    department: str | None = None
    token_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def oversees(self) -> bool:
        """Supervisors (and admins, who hold every right) see every ticket, identities and deadlines."""
        return self.role in (Role.ADMIN, Role.SUPERVISOR)

    @property
    def scoped(self) -> bool:
        """An agent with a department sees and changes only that department's tickets."""
        return self.role is Role.AGENT and self.department is not None

    def scope(self) -> dict[str, Any]:
        """The database condition of the tickets this principal may see."""
        return {"department": self.department} if self.scoped else {}

    def can_see(self, ticket: dict[str, Any]) -> bool:
        return not self.scoped or ticket.get("department") == self.department

    def sees_identity(self, ticket: dict[str, Any]) -> bool:
        """A confidential ticket hides the citizen from everyone but supervisors."""
        return self.oversees or not ticket.get("confidential")


TokenName = Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._@-]*$")


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = TokenName
    role: Role
    department: str | None = Field(default=None, min_length=1, max_length=40)


class TokenRead(BaseModel):
    id: str
    name: str
    role: Role
    department: str | None = None
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None


class TokenCreated(TokenRead):
    token: str = Field(description="the bearer token; shown once, only its hash is kept")


class TokenPage(BaseModel):
    items: list[TokenRead]
