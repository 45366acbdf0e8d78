from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.users.orm import Role


class UserCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[\w.@+-]+$")
    role: Role


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: Role
    created_at: datetime


class RoleChange(BaseModel):
    role: Role


class UserList(BaseModel):
    data: list[UserRead]
    count: int


class TokenIssued(BaseModel):
    token: str = Field(description="Shown once; only its hash is stored.")
    user_id: int
    id: int | None = None


class TokenRead(BaseModel):
    """A token's record; the token itself is never shown again."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    kind: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenList(BaseModel):
    data: list[TokenRead]
    count: int
