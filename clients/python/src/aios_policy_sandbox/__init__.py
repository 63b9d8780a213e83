"""The name existing users import: the same objects as `policygrid`, so their code runs unchanged."""
from policygrid import *  # noqa: F401,F403
from policygrid import __all__, __version__  # noqa: F401
