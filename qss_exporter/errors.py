"""The exporter's own exception tree; each layer maps foreign errors into it at its edge.

QssExporterError
 ├── ConfigError      invalid configuration (carries every problem found, not just the first)
 ├── SignatureError   a webhook whose signature headers are missing, stale or wrong
 ├── ZoomApiError     a failed call to Zoom's REST API
 │    └── ZoomAuthError    Zoom refused the OAuth client credentials (wrong id or secret, app deactivated)
 └── BudgetExhausted  the client-side daily API budget is spent (no call was made)
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["BudgetExhausted", "ConfigError", "QssExporterError", "SignatureError", "ZoomApiError", "ZoomAuthError"]


class QssExporterError(Exception):
    """Base class of every error qss-exporter raises on purpose."""


class ConfigError(QssExporterError):
    """The configuration is invalid; `problems` lists each as `key.path: what is wrong`."""

    def __init__(self, problems: Sequence[str], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(
            f"{len(self.problems)} configuration problem(s){where}:\n" + "\n".join(f"  - {p}" for p in self.problems)
        )


class SignatureError(QssExporterError):
    """A webhook failed verification; `reason` is the outcome label it is counted under."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


class ZoomApiError(QssExporterError):
    """A Zoom REST call failed; carries what a caller needs to decide on retrying."""

    def __init__(
        self,
        status: int,
        url: str,
        message: str,
        *,
        code: int | None = None,
        rate_limit_type: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.url = url
        self.code = code
        self.rate_limit_type = rate_limit_type
        self.retry_after = retry_after
        super().__init__(f"Zoom API {status} for {url}: {message}")


class ZoomAuthError(ZoomApiError):
    """The OAuth token request was refused: retrying soon will not help until the credentials are fixed."""


class BudgetExhausted(QssExporterError):
    """The daily budget of Zoom API calls of `scope` is spent until `resume_at` (a Unix time)."""

    def __init__(self, scope: str, resume_at: float) -> None:
        self.scope = scope
        self.resume_at = resume_at
        super().__init__(f"daily Zoom API budget of {scope} spent until {resume_at:.0f}")
