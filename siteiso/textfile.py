"""Text read from files: one rule for where its lines end.

Kept free of heavy imports: the cron shell, which every cron job of an
isolated account starts, uses it.
"""

from __future__ import annotations


def text_lines(text: str, keepends: bool = False) -> list[str]:
    """The lines of a file's text as the programs that write and read it see
    them: split at '\n' only. str.splitlines() also splits at \v, \f,
    \x1c-\x1e, \x85, U+2028 and U+2029, which a field of a record may hold
    (a docroot in a panel file, a command in a crontab): one record would
    become two."""
    lines = text.split("\n")
    if keepends:
        lines = [line + "\n" for line in lines[:-1]] + [lines[-1]]
    if lines and lines[-1] == "":
        lines.pop()
    return lines
