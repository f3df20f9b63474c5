"""The one exception type users see as a one-line message instead of a traceback."""


class DropbenchError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The entry point prints ``dropbench: error: <message>`` and exits with status 2;
    everything below it raises this (or a subclass) instead of printing.
    """


class ConfigError(DropbenchError):
    """A configuration value is out of range, of the wrong type, or not a known choice."""


class DataError(DropbenchError):
    """A dataset cannot be found, verified, downloaded or parsed."""


class StorageError(DropbenchError, OSError):
    """A file cannot be written (a full disk, a read-only folder); an OSError too, so that code
    catching OSError around a write still does. Every later run would fail alike: a sweep stops."""
