"""strictpy-client: the Python client of the strictpy job service.

>>> from strictpy_client import Client
>>> with Client("https://strictpy.example") as client:   # token from STRICTPY_TOKEN
...     job = client.run("result = sum(range(n))", context={"n": 10})
...     print(job.status, job.result)
succeeded 45
"""

from ._version import __version__
from .aio import AsyncClient
from .auth import (
    Credentials,
    OAuthCredentials,
    StaticToken,
    save_token_to_keyring,
    token_from_keyring,
)
from .client import Client
from .errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InsecureURLError,
    MissingCredentialsError,
    NotFoundError,
    PermissionDeniedError,
    PolicyViolationError,
    RateLimitedError,
    ServerError,
    StrictpyError,
    TransportError,
    UnprocessableError,
    WaitTimeoutError,
    WebhookVerificationError,
)
from .functions import AsyncFunctions, Function, FunctionPage, Functions, FunctionSummary
from .models import (
    BatchItem,
    Callback,
    CallbackAttempt,
    CheckResult,
    ErrorInfo,
    Job,
    JobEvent,
    JobEventKind,
    JobPage,
    JobRequest,
    JobStatus,
    JobSummary,
    Limits,
    Outcome,
    OutcomeStatus,
    RunError,
    Usage,
    Verdict,
    Violation,
)
from .retry import NO_RETRY, RateLimiter, RetryPolicy
from .webhooks import SIGNATURE_HEADER, signature_header, verify_signature, verify_webhook

__all__ = [
    "NO_RETRY",
    "SIGNATURE_HEADER",
    "APIError",
    "AsyncClient",
    "AsyncFunctions",
    "AuthenticationError",
    "BadRequestError",
    "BatchItem",
    "Callback",
    "CallbackAttempt",
    "CheckResult",
    "Client",
    "ConflictError",
    "Credentials",
    "ErrorInfo",
    "Function",
    "FunctionPage",
    "FunctionSummary",
    "Functions",
    "InsecureURLError",
    "Job",
    "JobEvent",
    "JobEventKind",
    "JobPage",
    "JobRequest",
    "JobStatus",
    "JobSummary",
    "Limits",
    "MissingCredentialsError",
    "NotFoundError",
    "OAuthCredentials",
    "Outcome",
    "OutcomeStatus",
    "PermissionDeniedError",
    "PolicyViolationError",
    "RateLimitedError",
    "RateLimiter",
    "RetryPolicy",
    "RunError",
    "ServerError",
    "StaticToken",
    "StrictpyError",
    "TransportError",
    "UnprocessableError",
    "Usage",
    "Verdict",
    "Violation",
    "WaitTimeoutError",
    "WebhookVerificationError",
    "__version__",
    "save_token_to_keyring",
    "signature_header",
    "token_from_keyring",
    "verify_signature",
    "verify_webhook",
]
