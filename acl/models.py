"""Who is asking (Principal) and who may read a document (DocumentAcl)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Principal(BaseModel):
    """An authenticated caller. Built only by an authenticator, never from a request body."""

    model_config = ConfigDict(frozen=True)

    tenant: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    groups: tuple[str, ...] = ()
    department: str | None = None
    roles: tuple[str, ...] = Field((), description="e.g. 'connector' to write documents.")
    key_id: str | None = Field(
        None,
        description="The credential's public, non-secret id: an API key's id, or "
        "'oidc:<sub>' for a JWT. For metering and the audit, never for access decisions.",
    )

    @field_validator("groups", "roles", mode="before")
    @classmethod
    def _dedupe(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return tuple(sorted({str(group) for group in value}))
        return value


class DocumentAcl(BaseModel):
    """Who may read a document. Empty means nobody (deny by default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    public: bool = False

    def allows(self, principal: Principal) -> bool:
        """The same rule as the store-side permission filter, for checks in memory."""
        return (
            self.public
            or principal.user_id in self.users
            or any(group in self.groups for group in principal.groups)
        )
