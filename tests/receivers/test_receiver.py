"""``webhooks.receiver`` in real Django request handling: the ``verify_webhook``
decorator and the DRF classes, with this module as the URLconf and the suite's
Redis as the replay cache.

Every rejection is checked for having no side effect: the view did not run
(``HANDLED`` stays empty) and the webhook-id was not claimed (the genuine
request with the same id is still accepted afterwards).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.test import Client
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response

from tests.receivers.helpers import event_body, new_msg_id, signed_headers
from webhooks import signing
from webhooks.receiver import (
    WebhookAPIView,
    WebhookEvent,
    WebhookRejected,
    claim_webhook_id,
    verified_event,
    verify_webhook,
)

SECRET = signing.generate_secret()
NEXT_SECRET = signing.generate_secret()  # the receiver also accepts it (mid-rotation)

# What the views did: (path, event). The side effect a rejection must not have.
HANDLED: list[tuple[str, WebhookEvent]] = []


def _handle(request: HttpRequest, event: WebhookEvent, status: int) -> HttpResponse:
    HANDLED.append((request.path, event))
    if status == 599:
        raise RuntimeError("the view crashed")
    return HttpResponse(status=status)


@verify_webhook(secrets=[SECRET, NEXT_SECRET])
def django_view(request: HttpRequest, status: int = 204) -> HttpResponseBase:
    return _handle(request, request.webhook, status)  # type: ignore[attr-defined]  # set by verify_webhook


@verify_webhook(secrets=lambda request: [SECRET])
def other_django_view(request: HttpRequest) -> HttpResponseBase:
    return _handle(request, request.webhook, 204)  # type: ignore[attr-defined]  # set by verify_webhook


class DrfView(WebhookAPIView):
    webhook_secrets = [SECRET, NEXT_SECRET]

    def post(self, request: Request, status: int = 204) -> Response:
        assert request.auth is request.webhook  # type: ignore[attr-defined]  # set by WebhookAPIView
        _handle(request._request, request.auth, status)
        return Response(status=status)


urlpatterns = [
    path("django/", django_view),
    path("django/status/<int:status>/", django_view),
    path("django-other/", other_django_view),
    path("drf/", DrfView.as_view()),
    path("drf/status/<int:status>/", DrfView.as_view()),
]
pytestmark = pytest.mark.urls(__name__)

KINDS = ["django", "drf"]


@pytest.fixture(autouse=True)
def _clear_handled() -> Iterator[None]:
    HANDLED.clear()
    yield
    HANDLED.clear()


@pytest.fixture
def client() -> Client:
    # CSRF enforced as in production: the decorator must exempt the view itself.
    return Client(enforce_csrf_checks=True, raise_request_exception=False)


Post = Callable[..., Any]


@pytest.fixture
def post(client: Client) -> Post:
    def send(url: str, body: bytes, headers: dict[str, str]) -> Any:
        return client.post(url, data=body, content_type="application/json", headers=headers)

    return send


def handled_ids() -> list[str]:
    return [event.id for _, event in HANDLED]


# --- Accepted --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_a_signed_request_reaches_the_view_with_the_event(kind: str, post: Post) -> None:
    # Given a request signed as the worker signs it
    body = event_body("invoice.paid", {"amount": 1250})
    headers = signed_headers(SECRET, body)

    # When it is posted
    response = post(f"/{kind}/", body, headers)

    # Then the view ran once with the parsed event
    assert response.status_code == 204
    ((_, event),) = HANDLED
    assert event.id == headers["webhook-id"]
    assert event.type == "invoice.paid" and event.data == {"amount": 1250}
    assert event.body == body
    assert event.timestamp.isoformat() == "2026-11-23T15:00:00+00:00"
    assert int(event.sent_at.timestamp()) == int(headers["webhook-timestamp"])


@pytest.mark.parametrize("kind", KINDS)
def test_a_rotation_header_is_accepted_by_a_receiver_holding_any_one_secret(kind: str, post: Post) -> None:
    # Given Hookpost signs with an old secret the receiver no longer has, and the new one
    body = event_body()
    headers = signed_headers([signing.generate_secret(), NEXT_SECRET], body)

    assert post(f"/{kind}/", body, headers).status_code == 204
    assert handled_ids() == [headers["webhook-id"]]


def test_two_receiving_views_each_accept_the_same_message(post: Post) -> None:
    # Hookpost sends one message to every subscribed endpoint with the same webhook-id.
    body = event_body()
    headers = signed_headers(SECRET, body)

    assert post("/django/", body, headers).status_code == 204
    assert post("/django-other/", body, headers).status_code == 204
    assert [p for p, _ in HANDLED] == ["/django/", "/django-other/"]


# --- Rejected, with no side effect -------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_a_replayed_request_is_refused_with_409(kind: str, post: Post) -> None:
    # Given a request that was accepted
    body = event_body()
    headers = signed_headers(SECRET, body)
    assert post(f"/{kind}/", body, headers).status_code == 204

    # When the identical request arrives again
    replay = post(f"/{kind}/", body, headers)

    # Then it is refused and the view did not run again
    assert replay.status_code == 409
    assert handled_ids() == [headers["webhook-id"]]


@pytest.mark.parametrize("kind", KINDS)
def test_a_re_serialized_body_is_refused_with_401_and_burns_no_id(kind: str, post: Post) -> None:
    # Given a signed compact body, and the same JSON with other whitespace
    body = event_body()
    reformatted = event_body(indent=2)
    assert reformatted != body
    headers = signed_headers(SECRET, body)

    # When the re-serialized bytes arrive with the original headers
    response = post(f"/{kind}/", reformatted, headers)

    # Then they do not verify, and the view did not run
    assert response.status_code == 401
    assert response["WWW-Authenticate"]
    assert HANDLED == []
    # ... and the id was not claimed: the genuine request is still accepted
    assert post(f"/{kind}/", body, headers).status_code == 204
    assert handled_ids() == [headers["webhook-id"]]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("missing", signing.HEADER_NAMES)
def test_a_missing_header_is_refused_with_400(kind: str, missing: str, post: Post) -> None:
    body = event_body()
    headers = signed_headers(SECRET, body)
    partial = {k: v for k, v in headers.items() if k != missing}

    response = post(f"/{kind}/", body, partial)

    assert response.status_code == 400
    assert HANDLED == []
    assert post(f"/{kind}/", body, headers).status_code == 204


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_without_any_webhook_header_is_refused_with_400(kind: str, post: Post) -> None:
    response = post(f"/{kind}/", event_body(), {})

    assert response.status_code == 400
    assert HANDLED == []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"webhook-timestamp": "soon"}, 400, "bad_header"),
        ({"webhook-signature": "v1,not-base64!"}, 400, "bad_header"),
        ({"webhook-id": "msg_someone_else"}, 401, "bad_signature"),
    ],
    ids=["timestamp-not-digits", "signature-malformed", "id-changed"],
)
def test_a_tampered_header_is_refused(
    kind: str, change: dict[str, str], status: int, code: str, post: Post
) -> None:
    body = event_body()
    headers = signed_headers(SECRET, body)

    response = post(f"/{kind}/", body, {**headers, **change})

    assert response.status_code == status
    if kind == "django":
        assert response.json()["error"]["code"] == code
    assert HANDLED == []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("offset", "code"), [(-301, "stale_timestamp"), (+301, "future_timestamp")], ids=["stale", "future"]
)
def test_a_timestamp_outside_the_window_is_refused_with_401(
    kind: str, offset: int, code: str, post: Post
) -> None:
    body = event_body()
    headers = signed_headers(SECRET, body, timestamp=int(time.time()) + offset)

    response = post(f"/{kind}/", body, headers)

    assert response.status_code == 401
    if kind == "django":
        assert response.json()["error"]["code"] == code
    assert HANDLED == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_stranger_s_signature_is_refused_with_401(kind: str, post: Post) -> None:
    body = event_body()

    response = post(f"/{kind}/", body, signed_headers(signing.generate_secret(), body))

    assert response.status_code == 401
    assert HANDLED == []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "body", [b"not json", b"[1, 2]", b'{"type": "x"}', b'{"type": "x", "data": {}, "timestamp": "today"}']
)
def test_a_signed_body_that_is_not_an_event_is_refused_with_400(kind: str, body: bytes, post: Post) -> None:
    headers = signed_headers(SECRET, body)

    response = post(f"/{kind}/", body, headers)

    assert response.status_code == 400
    assert HANDLED == []
    # ... and the id stays free for the genuine event
    good = event_body()
    retry = signed_headers(SECRET, good, msg_id=headers["webhook-id"])
    assert post(f"/{kind}/", good, retry).status_code == 204


# --- The claim is given back when the view fails -------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", [500, 422, 599], ids=["answers-500", "answers-422", "raises"])
def test_a_failing_view_gives_the_id_back_so_the_sender_s_retry_is_processed(
    kind: str, status: int, post: Post
) -> None:
    # Given the view failed on the first attempt
    body = event_body()
    first = signed_headers(SECRET, body)
    assert post(f"/{kind}/status/{status}/", body, first).status_code == (500 if status == 599 else status)

    # When the sender retries: same webhook-id, a new timestamp and signature
    retry = signed_headers(SECRET, body, msg_id=first["webhook-id"], timestamp=int(time.time()) + 1)
    response = post(f"/{kind}/", body, retry)

    # Then the retry is processed
    assert response.status_code == 204
    assert handled_ids() == [first["webhook-id"], first["webhook-id"]]


# --- The replay guard's lifetime and configuration -----------------------------------------------
def test_the_replay_claim_lasts_until_the_timestamp_leaves_the_window(rf: Any) -> None:
    # Given an event whose timestamp leaves the window in one second
    body = event_body()
    headers = signed_headers(SECRET, body)
    request = rf.post("/", data=body, content_type="application/json", headers=headers)
    event = verified_event(request, secrets=[SECRET], tolerance=300)
    namespace = f"test-lifetime-{new_msg_id()}"
    almost_stale = event.sent_at.timestamp() + 299
    claim_webhook_id(event, namespace=namespace, tolerance=300, now=almost_stale)

    # Then it is refused as a replay now
    with pytest.raises(WebhookRejected) as refused:
        claim_webhook_id(event, namespace=namespace, tolerance=300, now=almost_stale)
    assert refused.value.rejection.status == 409
    # ... and the cache forgets it once the request could no longer verify
    time.sleep(2.2)
    claim_webhook_id(event, namespace=namespace, tolerance=300)


def test_the_decorator_refuses_bad_configuration_at_import() -> None:
    with pytest.raises(TypeError, match="exactly one"):
        verify_webhook(secret=SECRET, secrets=[SECRET])
    with pytest.raises(TypeError, match="exactly one"):
        verify_webhook()
    with pytest.raises(signing.InvalidSecret):
        verify_webhook(secret="whsec_tooshort")
    with pytest.raises(ValueError, match="empty"):
        verify_webhook(secrets=[])
    with pytest.raises(ValueError, match="tolerance"):
        verify_webhook(secret=SECRET, tolerance=-1)
