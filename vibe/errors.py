"""The one exception type a user can cause; the CLI and the dashboard print its message as is."""


class VibeError(Exception):
    """A problem with the user's input or artifacts, phrased as: what is wrong, and what to do."""
