"""openended: open-ended search with language models."""

from openended.api import RunResult, aresume, arun, resume, run
from openended.config import Config, ConfigError, load_config

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "RunResult",
    "__version__",
    "aresume",
    "arun",
    "load_config",
    "resume",
    "run",
]
