"""Services around the sites: web server tier, daemon, cron, hooks."""
