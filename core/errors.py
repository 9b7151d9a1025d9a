"""The error hierarchy.

Every error erp raises on purpose is an ``ErpError``: it says what failed,
where, and (``hint``) how to fix it. The CLI maps them to exit code 1; any
other exception is an internal error (exit code 2).
"""

from __future__ import annotations

from typing import Any


class ErpError(Exception):
    """Base class: a user, data or config problem (exit code 1)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.fields = {k: v for k, v in fields.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": type(self).__name__, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        out.update({k: str(v) if not isinstance(v, (int, float, bool, list)) else v
                    for k, v in self.fields.items()})
        return out


class ConfigError(ErpError):
    """A config file or value is wrong. Fields: path, key."""

    def __init__(self, message: str, *, path: Any = None, key: str | None = None,
                 hint: str | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}"
            if key:
                where += f": {key}"
            message = f"{where}: {message}"
        elif key:
            message = f"{key}: {message}"
        super().__init__(message, hint=hint, path=path, key=key)


class TenantError(ErpError):
    """A tenant id is invalid or unknown. Field: tenant."""

    def __init__(self, message: str, *, tenant: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, tenant=tenant)


class InputError(ErpError):
    """An input cannot be read at all (missing file, bad URL). Fields: path."""

    def __init__(self, message: str, *, path: Any = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, path=path)


class LakeError(ErpError):
    """The lake cannot be written or read (disk full, permissions). Field: path."""

    def __init__(self, message: str, *, path: Any = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, path=path)
