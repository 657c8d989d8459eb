"""Lifecycle (DESIGN layer 7): find a site's processes, end them, and keep
siteiso's cgroup tree (siteiso.slice/user-<uid>/{site-<token>,cage})."""

from siteiso.procs.lifecycle import (
    Result,
    SiteMatch,
    cgroup_pids,
    cgroup_root,
    ensure_cgroup,
    find_site_processes,
    kill_cgroup,
    remove_cgroup_tree,
    terminate,
)

__all__ = [
    "Result",
    "SiteMatch",
    "cgroup_pids",
    "cgroup_root",
    "ensure_cgroup",
    "find_site_processes",
    "kill_cgroup",
    "remove_cgroup_tree",
    "terminate",
]
