"""The commands: cagefsctl, cagefsctl-user, selectorctl, siteiso."""
