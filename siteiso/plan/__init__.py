"""Plans: pure functions from (user, sites, config) to mount operations."""

from siteiso.plan.ops import Op, render
from siteiso.plan.sites import SiteInput, app_root, site_paths
from siteiso.plan.view import CageInput, cage_plan, site_plan

__all__ = ["CageInput", "Op", "SiteInput", "app_root", "cage_plan", "render",
           "site_paths", "site_plan"]
