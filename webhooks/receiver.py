"""Receiving Hookpost webhooks in a Django or DRF app: verify, reject replays,
hand the event to the view.

Two ways in, with the same checks and the same answers:

- plain Django: ``@verify_webhook(secret=...)`` on a view; the event is
  ``request.webhook``;
- DRF: subclass ``WebhookAPIView`` (or put ``WebhookSignatureAuthentication``
  and ``HasVerifiedWebhook`` on your own view); the event is ``request.auth``
  and ``request.webhook``.

What a request goes through, in order (the first failure answers):

1. ``webhooks.signing.verify`` on the raw ``request.body``:
   missing header -> 400 ``missing_header``; malformed header -> 400
   ``bad_header``; timestamp too old / too new -> 401 ``stale_timestamp`` /
   ``future_timestamp``; no signature matches -> 401 ``bad_signature``.
2. The verified body must be a Standard Webhooks event
   ``{"type": str, "timestamp": ISO 8601, "data": ...}``, else 400 ``bad_payload``.
3. Replay guard: the ``webhook-id`` is claimed with ``cache.add`` (atomic) for as
   long as the request's timestamp stays inside the tolerance window. Already
   claimed -> 409 ``replayed``. The claim happens only after step 1 succeeded,
   so forged requests cannot burn an id.
4. The view runs. If it raises or answers anything but 2xx, the claim is given
   back, so the sender's retry (same ``webhook-id``) is processed instead of
   being refused as a replay.

A rejected request never reaches the view and stores nothing. The replay guard
is not a substitute for idempotent handling: the cache forgets an id after the
window, and a sender retries with the same id after a lost response. Record
``event.id`` durably (a unique column) in the same transaction as the work.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import math
import secrets as secrets_module
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias

from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf_exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from webhooks import signing

logger = logging.getLogger(__name__)

#: Where secrets come from: one secret, several (during a rotation), or a
#: callable given the request (to look secrets up per tenant or from settings
#: at request time). Secrets may carry the ``whsec_`` prefix or not.
SecretsSource: TypeAlias = str | Iterable[str] | Callable[[HttpRequest], str | Iterable[str]]

REPLAY_KEY_PREFIX = "webhook-replay"
REPLAY_STATUS = 409
_CLAIM_ATTRIBUTE = "_webhook_replay_claim"


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook.

    ``id`` is the ``webhook-id``: the same on every retry and replay of one
    message, so deduplicate on it. ``timestamp`` is when the event happened
    (the body's ``timestamp``); ``sent_at`` is when this attempt was signed
    (the ``webhook-timestamp`` header; it changes on every retry). ``body`` is
    the raw bytes that were verified.
    """

    id: str
    timestamp: datetime
    type: str
    data: Any
    body: bytes = field(repr=False)
    sent_at: datetime


@dataclass(frozen=True)
class Rejection:
    """Why a request was refused, and the HTTP answer for it."""

    status: int
    code: str
    message: str

    def response(self) -> JsonResponse:
        """The answer of the plain Django decorator (the API's error envelope)."""
        response = JsonResponse(
            {"error": {"code": self.code, "message": self.message, "details": {}}}, status=self.status
        )
        if self.status == 401:
            # RFC 9110: a 401 names the scheme the client should use.
            response["WWW-Authenticate"] = WWW_AUTHENTICATE
        return response


WWW_AUTHENTICATE = 'Webhook-Signature realm="webhooks"'


class WebhookRejected(Exception):
    """Raised inside this module to stop a request; carries its Rejection."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection


# One place maps verification failures to answers: 400 for requests that are
# not well-formed webhooks, 401 for well-formed ones we cannot authenticate.
_REJECTIONS: list[tuple[type[signing.VerificationError], int, str]] = [
    (signing.MissingHeader, 400, "missing_header"),
    (signing.BadHeader, 400, "bad_header"),
    (signing.StaleTimestamp, 401, "stale_timestamp"),
    (signing.FutureTimestamp, 401, "future_timestamp"),
    (signing.NoMatchingSignature, 401, "bad_signature"),
]


def rejection_for(exc: signing.VerificationError) -> Rejection:
    """The answer for a verification failure (an unknown subclass counts as a bad signature)."""
    for klass, status, code in _REJECTIONS:
        if isinstance(exc, klass):
            return Rejection(status, code, str(exc))
    return Rejection(401, "bad_signature", str(exc))


# --- Verification (no side effects) ------------------------------------------------
def resolve_secrets(source: SecretsSource, request: HttpRequest) -> list[str]:
    """The secrets to verify ``request`` with; a callable source is called with it."""
    value = source(request) if callable(source) else source
    return [value] if isinstance(value, str) else list(value)


def verified_event(request: HttpRequest, *, secrets: list[str], tolerance: int) -> WebhookEvent:
    """Verify ``request`` and parse its event; raise WebhookRejected, store nothing.

    Configuration errors (no secrets, a malformed secret) are not rejections:
    they raise ValueError / signing.InvalidSecret, which Django answers 500.
    """
    body = request.body  # the raw bytes: re-serialized JSON would not verify
    headers = {name: request.headers.get(name, "") for name in signing.HEADER_NAMES}
    try:
        signing.verify(secrets, headers, body, tolerance=tolerance)
    except signing.VerificationError as exc:
        raise WebhookRejected(rejection_for(exc)) from exc
    # verify() accepted these, so they are present and the timestamp is digits.
    sent_at = datetime.fromtimestamp(int(headers["webhook-timestamp"].strip()), tz=UTC)
    return _parse_event(headers["webhook-id"].strip(), sent_at, body)


def _parse_event(msg_id: str, sent_at: datetime, body: bytes) -> WebhookEvent:
    def bad(reason: str) -> WebhookRejected:
        return WebhookRejected(Rejection(400, "bad_payload", f"the body is not a webhook event: {reason}"))

    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad("not UTF-8 JSON") from exc
    if not isinstance(payload, dict):
        raise bad("not a JSON object")
    if not isinstance(payload.get("type"), str) or "data" not in payload:
        raise bad("'type' (a string) and 'data' are required")
    try:
        timestamp = datetime.fromisoformat(payload["timestamp"])
    except (KeyError, TypeError, ValueError) as exc:
        raise bad("'timestamp' must be an ISO 8601 date-time") from exc
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)  # Hookpost writes UTC
    return WebhookEvent(
        id=msg_id, timestamp=timestamp, type=payload["type"], data=payload["data"], body=body, sent_at=sent_at
    )


# --- Replay guard --------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayClaim:
    """This request's hold on a ``webhook-id`` in the cache."""

    cache_alias: str
    key: str
    token: str

    def release(self) -> None:
        """Give the id back (the view failed), unless the entry is no longer ours."""
        cache = caches[self.cache_alias]
        # get-then-delete is not atomic; the entry can only have changed hands
        # if the view outlived the whole window, and then the sender retries.
        if cache.get(self.key) == self.token:
            cache.delete(self.key)


def replay_key(namespace: str, msg_id: str) -> str:
    """The cache key of a ``webhook-id``; hashed, since ids are sender-chosen text."""
    digest = hashlib.sha256(msg_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{REPLAY_KEY_PREFIX}:{namespace}:{digest}"


def claim_webhook_id(
    event: WebhookEvent,
    *,
    namespace: str,
    tolerance: int,
    cache_alias: str = "default",
    now: float | None = None,
) -> ReplayClaim:
    """Claim ``event.id`` until its timestamp leaves the window; raise WebhookRejected (409) if taken.

    Call only for a verified event: claiming first would let forgeries burn ids.
    """
    current = time.time() if now is None else now
    # The signed request stays acceptable until sent_at + tolerance; remember
    # the id that long (at most 2 x tolerance, when the sender's clock is ahead).
    remaining = event.sent_at.timestamp() + tolerance - current
    claim = ReplayClaim(cache_alias, replay_key(namespace, event.id), secrets_module.token_hex(8))
    if not caches[cache_alias].add(claim.key, claim.token, timeout=max(1, math.ceil(remaining) + 1)):
        raise WebhookRejected(
            Rejection(REPLAY_STATUS, "replayed", "this webhook-id was already accepted; not processed again")
        )
    return claim


def finish_claim(claim: ReplayClaim | None, response: HttpResponseBase | None) -> None:
    """Keep the claim when the view answered 2xx; give it back otherwise (None = it raised)."""
    if claim is not None and (response is None or not 200 <= response.status_code < 300):
        claim.release()


def _log_rejection(request: HttpRequest, rejection: Rejection) -> None:
    # The id is sender-supplied text: logged with %r, and never the body.
    level = logging.INFO if rejection.status == REPLAY_STATUS else logging.WARNING
    logger.log(
        level,
        "webhook rejected: %s (webhook_id=%r path=%s status=%s)",
        rejection.code,
        request.headers.get("webhook-id", "")[:200],
        request.path,
        rejection.status,
        extra={"webhook_code": rejection.code, "webhook_status": rejection.status},
    )


# --- Plain Django --------------------------------------------------------------------
ViewFunc: TypeAlias = Callable[..., HttpResponseBase]


def verify_webhook(
    *,
    secret: str | None = None,
    secrets: Iterable[str] | Callable[[HttpRequest], str | Iterable[str]] | None = None,
    tolerance: int = signing.DEFAULT_TOLERANCE_SECONDS,
    replay_namespace: str | None = None,
    cache_alias: str = "default",
) -> Callable[[ViewFunc], ViewFunc]:
    """Decorate a (sync) Django view that receives Hookpost webhooks.

    Give exactly one of ``secret`` (one secret) or ``secrets`` (a list, or a
    callable ``f(request)`` returning the secrets, looked up per request).
    Static secrets are checked now, so a typo fails at import.

    The view runs only for a verified, fresh, not-yet-seen request, with the
    event as ``request.webhook`` (a WebhookEvent); otherwise the answer is
    400 / 401 / 409 as the module docstring lists, as JSON
    ``{"error": {"code", "message"}}``. ``replay_namespace`` scopes the replay
    guard (default: the view's dotted name), so two receiving views may both
    get the same message. The view is CSRF-exempt: the signature replaces the
    CSRF token.
    """
    source = _secrets_source(secret, secrets)
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0 seconds")

    def decorator(view: ViewFunc) -> ViewFunc:
        if inspect.iscoroutinefunction(view):
            raise TypeError("verify_webhook supports sync views only")
        namespace = replay_namespace or f"{view.__module__}.{view.__qualname__}"

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            try:
                event = verified_event(request, secrets=resolve_secrets(source, request), tolerance=tolerance)
                claim = claim_webhook_id(
                    event, namespace=namespace, tolerance=tolerance, cache_alias=cache_alias
                )
            except WebhookRejected as rejected:
                _log_rejection(request, rejected.rejection)
                return rejected.rejection.response()
            request.webhook = event  # type: ignore[attr-defined]  # the verified event, for the view
            try:
                response = view(request, *args, **kwargs)
            except BaseException:
                finish_claim(claim, None)
                raise
            finish_claim(claim, response)
            return response

        return csrf_exempt(wrapper)

    return decorator


def _secrets_source(
    secret: str | None, secrets: Iterable[str] | Callable[[HttpRequest], str | Iterable[str]] | None
) -> SecretsSource:
    if (secret is None) == (secrets is None):
        raise TypeError("give exactly one of secret= or secrets=")
    if secret is not None:
        signing.decode_secret(secret)
        return secret
    assert secrets is not None
    if callable(secrets):
        return secrets
    fixed = [secrets] if isinstance(secrets, str) else list(secrets)
    if not fixed:
        raise ValueError("secrets= is empty")
    for each in fixed:
        signing.decode_secret(each)
    return fixed


# --- Django REST framework ------------------------------------------------------------
class WebhookBadRequest(drf_exceptions.APIException):
    status_code = 400
    default_detail = "The request is not a well-formed webhook."
    default_code = "bad_webhook"


class WebhookAuthenticationFailed(drf_exceptions.AuthenticationFailed):
    default_detail = "The webhook signature does not verify."


class WebhookReplayed(drf_exceptions.APIException):
    status_code = REPLAY_STATUS
    default_detail = "This webhook-id was already accepted."
    default_code = "replayed"


def _api_exception(rejection: Rejection) -> drf_exceptions.APIException:
    klass: type[drf_exceptions.APIException] = {
        400: WebhookBadRequest,
        401: WebhookAuthenticationFailed,
        REPLAY_STATUS: WebhookReplayed,
    }[rejection.status]
    return klass(rejection.message, rejection.code)


class WebhookSignatureAuthentication(BaseAuthentication):
    """DRF authentication by Standard Webhooks signature.

    Reads its settings from the view: the secrets from
    ``view.get_webhook_secrets(request)`` if the view has it, else from
    ``view.webhook_secrets`` (one secret or a list); ``webhook_tolerance``
    (default 300 s) and ``webhook_replay_namespace`` (default: the view
    class's dotted name).

    Returns ``(UNAUTHENTICATED_USER, WebhookEvent)``, so the event is
    ``request.auth`` (and ``request.webhook``); returns None when the request
    carries none of the three headers, so other authenticators may try; raises
    400 / 401 / 409 (see the module docstring) otherwise. Put it first in
    ``authentication_classes``: DRF takes the 401 challenge from the first one.
    """

    def authenticate(self, request: Request) -> tuple[Any, WebhookEvent] | None:
        if not any(name in request.headers for name in signing.HEADER_NAMES):
            return None
        view = request.parser_context.get("view") if request.parser_context else None
        django_request: HttpRequest = request._request
        getter = getattr(view, "get_webhook_secrets", None)
        source = getter(django_request) if getter else getattr(view, "webhook_secrets", None)
        if source is None:
            raise ImproperlyConfigured(f"{type(view).__name__}: set webhook_secrets or get_webhook_secrets()")
        tolerance = int(getattr(view, "webhook_tolerance", signing.DEFAULT_TOLERANCE_SECONDS))
        namespace = getattr(view, "webhook_replay_namespace", None) or (
            f"{type(view).__module__}.{type(view).__qualname__}"
        )
        try:
            secrets = resolve_secrets(source, django_request)
            event = verified_event(django_request, secrets=secrets, tolerance=tolerance)
            claim = claim_webhook_id(event, namespace=namespace, tolerance=tolerance)
        except WebhookRejected as rejected:
            _log_rejection(django_request, rejected.rejection)
            raise _api_exception(rejected.rejection) from rejected
        django_request.webhook = event  # type: ignore[attr-defined]  # the verified event, for the view
        # WebhookAPIView gives the id back if the view fails; see finish_claim.
        setattr(django_request, _CLAIM_ATTRIBUTE, claim)
        user_class = api_settings.UNAUTHENTICATED_USER
        return (user_class() if user_class else None), event

    def authenticate_header(self, request: Request) -> str:
        return WWW_AUTHENTICATE


class HasVerifiedWebhook(BasePermission):
    """Only requests that WebhookSignatureAuthentication verified.

    Raises 400 ``missing_header`` (instead of DRF's 401/403) for a request
    without the webhook headers, matching the decorator.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.auth, WebhookEvent):
            return True
        raise WebhookBadRequest(
            "missing header webhook-id, webhook-timestamp, webhook-signature", "missing_header"
        )


class WebhookAPIView(APIView):
    """Base for DRF receiving views: signature authentication, the permission
    above, and the replay claim given back when the handler raises or answers
    non-2xx (so the sender's retry is processed).

    Set ``webhook_secrets`` (one secret or a list), or override
    ``get_webhook_secrets(request)`` to look them up per request.
    """

    authentication_classes = [WebhookSignatureAuthentication]
    permission_classes = [HasVerifiedWebhook]
    webhook_secrets: str | Iterable[str] | None = None
    webhook_tolerance: int = signing.DEFAULT_TOLERANCE_SECONDS
    webhook_replay_namespace: str | None = None

    def get_webhook_secrets(self, request: HttpRequest) -> str | Iterable[str]:
        """The secrets to verify ``request`` with; by default ``webhook_secrets``."""
        if self.webhook_secrets is None:
            raise ImproperlyConfigured(f"{type(self).__name__}: set webhook_secrets or get_webhook_secrets()")
        return self.webhook_secrets

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            response = super().dispatch(request, *args, **kwargs)
        except BaseException:
            finish_claim(getattr(request, _CLAIM_ATTRIBUTE, None), None)
            raise
        finish_claim(getattr(request, _CLAIM_ATTRIBUTE, None), response)
        return response


__all__ = [
    "HasVerifiedWebhook",
    "Rejection",
    "ReplayClaim",
    "WebhookAPIView",
    "WebhookAuthenticationFailed",
    "WebhookBadRequest",
    "WebhookEvent",
    "WebhookRejected",
    "WebhookReplayed",
    "WebhookSignatureAuthentication",
    "claim_webhook_id",
    "rejection_for",
    "replay_key",
    "resolve_secrets",
    "verified_event",
    "verify_webhook",
]
