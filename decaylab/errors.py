"""The base of the project's own errors for a refused operation the user can fix."""


class DecaylabError(RuntimeError):
    """An operation refused for a reason the message states, with the fix; the CLI prints it as
    one line (``decaylab <cmd>: error: ...``, exit status 2)."""
