"""The test harness is the product's sandbox (siteiso.sandbox), shared with
`siteiso demo`."""

from siteiso.sandbox import Sandbox, User, host_snapshot

__all__ = ["Sandbox", "User", "host_snapshot"]
