"""One frozen settings object, read from SCHEDULE_* environment variables and validated at start-up.

``fields`` holds the Settings class (every knob, its default and its description); ``parse`` how each value
is read from its variable.
"""

from schedule_grpc.settings.fields import Settings
from schedule_grpc.settings.parse import SettingsError

__all__ = ["Settings", "SettingsError"]
