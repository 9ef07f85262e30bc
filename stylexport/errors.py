"""One exception type for user mistakes: the CLI prints its message on one line and exits with 2."""


class StylexportError(Exception):
    """A problem the user can fix (bad input file, wrong option, missing weights).

    The message names the offending value and what to do about it, on one line.
    """
