"""siteiso: website isolation for shared Linux web hosting."""

__version__ = "0.1.0"
