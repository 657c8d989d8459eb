"""Typed errors: the one boundary where failures become messages.

Every error carries the exact text the admin sees; commands print it on
stderr (or as JSON) and exit 1. No raw errno numbers leave this layer.
"""


class SiteisoError(Exception):
    """An expected failure with a message meant for the admin."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(SiteisoError):
    exit_code = 2


class NotRoot(SiteisoError):
    def __init__(self) -> None:
        super().__init__("This command must be run as root")


class NotEnabled(SiteisoError):
    def __init__(self) -> None:
        super().__init__("Website isolation is not enabled")


class NotAllowed(SiteisoError):
    def __init__(self, user: str) -> None:
        super().__init__(f"Website isolation is not allowed for user {user}")


class DomainNotFound(SiteisoError):
    def __init__(self, domain: str = "") -> None:
        super().__init__("Please specify existing domain name and try again")
        self.domain = domain


class UserNotFound(SiteisoError):
    def __init__(self, user: str) -> None:
        super().__init__(f"User {user} does not exist")


class NotHostingAccount(SiteisoError):
    def __init__(self, user: str) -> None:
        super().__init__(f"User {user} is not a hosting account")


class InvalidName(SiteisoError):
    """A domain, username or path that fails validation (§4.6)."""


class UnsafePath(SiteisoError):
    """A user-controlled path that is not what siteiso expects (§4.4)."""


class PanelError(SiteisoError):
    """The panel could not be read or answered with an error.

    kind is the error an integration script named (InternalAPIError,
    PermissionDenied, BadRequest, NotFound); empty when siteiso itself found
    the fault (a script that hung, crashed or printed junk, an unreadable file).
    """

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


class KernelUnsupported(SiteisoError):
    def __init__(self, missing: str) -> None:
        super().__init__(
            "Website isolation feature is not available on this platform\n"
            + missing
        )
        self.missing = missing


class EngineError(SiteisoError):
    """Building, entering or retiring a view failed."""
