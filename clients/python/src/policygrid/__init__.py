"""PolicyGrid Python SDK (standard library only).

    from policygrid import LocalPolicyEvaluator, PolicyGridClient
"""
from .bundles import UnpackLimits
from .client import PolicyGridClient
from .errors import PolicyGridApiError, PolicyGridError, PolicyGridWarning, ServerUnreachableError
from .evaluator import LocalPolicyEvaluator

__version__ = "0.1.0"
__all__ = [
    "LocalPolicyEvaluator",
    "PolicyGridApiError",
    "PolicyGridClient",
    "PolicyGridError",
    "PolicyGridWarning",
    "ServerUnreachableError",
    "UnpackLimits",
]
