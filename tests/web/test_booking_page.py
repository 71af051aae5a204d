"""The booking page in a real browser: live seats, the waitlist, identity and errors."""

from __future__ import annotations

import secrets

import httpx
import jwt
from playwright.sync_api import Page, Response, expect

from tessera_client.local import local_user_token

from .conftest import WebApp

# Live updates must reach another person's open page within this time, without a reload.
LIVE_MS = 1_000


def book(page: Page) -> Response:
    """Click Book once and return the server's answer."""
    with page.expect_response(lambda r: r.url.endswith("/bookings?seats=1")) as answer:
        page.click("form[data-book] button")
    return answer.value


def test_two_people_one_seat_live(web: WebApp) -> None:
    event = web.create_event("Duo recital", capacity=1)
    alice, bob = web.person("alice@example.test"), web.person("bob@example.test")
    web.open_event(alice, event)
    web.open_event(bob, event)
    expect(bob.locator("#availability .seats")).to_have_text("1 seat left")

    assert book(alice).status == 200
    expect(bob.locator("#availability .seats")).to_have_text("0 seats left", timeout=LIVE_MS)
    expect(alice.locator("#my-bookings .status")).to_have_text("confirmed")

    assert book(bob).status == 200
    expect(bob.locator("#my-bookings .status")).to_have_text("waitlisted, #1")
    expect(alice.locator("#availability .waiting")).to_have_text(
        "1 on the waitlist", timeout=LIVE_MS
    )

    with alice.expect_response(lambda r: r.url.endswith("/cancel")) as answer:
        alice.click("#my-bookings button:has-text('Cancel')")
    assert answer.value.status == 200
    expect(bob.locator("#my-bookings .status")).to_have_text("confirmed", timeout=LIVE_MS)
    expect(bob.locator("#availability")).to_have_text(
        "0 seats left · 0 on the waitlist", timeout=LIVE_MS
    )
    expect(alice.locator("#my-bookings")).to_have_text("No bookings yet.")
    assert [row["status"] for row in web.bookings_of(event)] == ["cancelled", "confirmed"]


def test_waitlist_position_moves_up_live(web: WebApp) -> None:
    event = web.create_event("Poetry slam", capacity=1)
    ahead, first_waiting = web.db.create_user(), web.db.create_user()
    web.book_as(ahead, event)
    waiting = web.book_as(first_waiting, event)
    gina = web.person("gina@example.test")
    web.open_event(gina, event)
    assert book(gina).status == 200
    expect(gina.locator("#my-bookings .status")).to_have_text("waitlisted, #2")

    web.cancel_as(first_waiting, waiting)  # someone else's booking: Gina's moves up
    expect(gina.locator("#my-bookings .status")).to_have_text("waitlisted, #1", timeout=LIVE_MS)
    expect(gina.locator("#availability .waiting")).to_have_text("1 on the waitlist")


def test_offer_is_claimed_before_its_deadline(web: WebApp) -> None:
    event = web.create_event("Chamber choir", capacity=1, promotion_mode="offer")
    alice, bob = web.person("alice@example.test"), web.person("bob@example.test")
    web.open_event(alice, event)
    web.open_event(bob, event)
    assert book(alice).status == 200
    assert book(bob).status == 200
    expect(bob.locator("#my-bookings .status")).to_have_text("waitlisted, #1")

    alice.click("#my-bookings button:has-text('Cancel')")
    expect(bob.locator("#my-bookings .status")).to_contain_text("offered until", timeout=LIVE_MS)
    with bob.expect_response(lambda r: r.url.endswith("/claim")) as answer:
        bob.click("#my-bookings button:has-text('Claim')")
    assert answer.value.status == 200
    expect(bob.locator("#my-bookings .status")).to_have_text("confirmed", timeout=LIVE_MS)


def test_expired_token_is_refused(web: WebApp) -> None:
    event = web.create_event("Late show", capacity=5)
    carol = web.person("carol@example.test")
    user_id = jwt.decode(
        carol.evaluate("localStorage.getItem('tessera.access_token')"),
        options={"verify_signature": False},
    )["sub"]
    web.open_event(carol, event)
    # The session runs out while the page is open.
    expired = local_user_token(web.jwt_secret, user_id, ttl=-60)
    carol.evaluate(f"localStorage.setItem('tessera.access_token', '{expired}')")

    assert book(carol).status == 401
    expect(carol.locator("#notice")).to_have_text(
        "Your session is missing, invalid or expired: sign in again."
    )
    expect(carol.locator("#who")).to_have_text("Sign in")  # the token was dropped
    assert web.bookings_of(event) == []

    # Coming back with it: the private stream refuses it too.
    carol.evaluate(f"localStorage.setItem('tessera.access_token', '{expired}')")
    carol.reload()
    expect(carol.locator("#notice")).to_have_text(
        "Your session is missing, invalid or expired: sign in again."
    )
    expect(carol.locator("#who")).to_have_text("Sign in")

    # Nor is a token the app did not sign, or no token at all.
    forged = local_user_token(secrets.token_urlsafe(32), user_id)
    for token in (expired, forged, "not-a-token", user_id):  # a bare user id is no token
        answer = carol.request.get(
            f"{web.url}/api/my-bookings", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status == 401
        assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert carol.request.post(f"{web.url}/api/events/{event.id}/bookings").status == 401


def test_double_click_books_once(web: WebApp) -> None:
    event = web.create_event("Quiz night", capacity=10)
    dave = web.person("dave@example.test")
    web.open_event(dave, event)
    requests = []
    dave.on(
        "request", lambda r: requests.append(r) if r.url.endswith("/bookings?seats=1") else None
    )
    with dave.expect_response(lambda r: r.url.endswith("/bookings?seats=1")):
        dave.dblclick("form[data-book] button")
    expect(dave.locator("#my-bookings .status")).to_have_text("confirmed")

    # Both clicks reached the server, with one idempotency key: one booking.
    assert len(requests) == 2
    keys = {r.headers["idempotency-key"] for r in requests}
    assert len(keys) == 1
    answers = [r.response() for r in requests]  # waits for both answers
    assert [a.status for a in answers if a] == [200, 200]
    assert len({a.json()["booking_id"] for a in answers if a}) == 1
    assert len(web.bookings_of(event)) == 1
    expect(dave.locator("#availability .seats")).to_have_text("9 seats left")


def test_sold_out_with_a_full_waitlist(web: WebApp) -> None:
    event = web.create_event("Tiny gig", capacity=1, waitlist_limit=1)
    web.book_as(web.db.create_user(), event)  # takes the seat
    web.book_as(web.db.create_user(), event)  # takes the one place on the waitlist
    erin = web.person("erin@example.test")
    web.open_event(erin, event)
    expect(erin.locator("#availability")).to_have_text("0 seats left · 1 on the waitlist")

    assert book(erin).status == 409
    expect(erin.locator("#notice")).to_have_text(
        "Sold out: no seats left and the waitlist is full."
    )
    expect(erin.locator("#my-bookings")).to_have_text("No bookings yet.")
    assert len(web.bookings_of(event)) == 2


def test_rate_limited_booking_says_when_to_retry(web: WebApp) -> None:
    web.db.sql(
        "update tessera.rate_limits set max_calls = 1, window_seconds = 60"
        " where action = 'book_event'"
    )
    first, second = web.create_event("Matinee", capacity=5), web.create_event("Soirée", 5)
    frank = web.person("frank@example.test")
    web.open_event(frank, first)
    assert book(frank).status == 200
    web.open_event(frank, second)
    answer = book(frank)
    assert answer.status == 429
    retry_after = int(answer.headers["retry-after"])
    assert 1 <= retry_after <= 60
    expect(frank.locator("#notice")).to_have_text(
        f"Too many requests: wait a moment and try again. (retry in {retry_after} s)"
    )
    assert web.bookings_of(second) == []


def test_availability_stream_resumes_after_last_event_id(web: WebApp) -> None:
    event = web.create_event("Open mic", capacity=5)
    url = f"{web.url}/api/events/{event.id}/availability"

    def first_event(headers: dict[str, str]) -> dict[str, str]:
        with httpx.stream("GET", url, headers=headers, timeout=10) as answer:
            assert answer.status_code == 200
            fields: dict[str, str] = {}
            for line in answer.iter_lines():
                if not line and fields:
                    return fields
                name, _, value = line.partition(": ")
                fields[name] = fields.get(name, "") + value
        raise AssertionError("the stream ended without an event")

    snapshot = first_event({})
    assert 'data-seats="5"' in snapshot["data"]
    web.book_as(web.db.create_user(), event)  # while nobody is connected
    # Reconnecting with the last id seen delivers the change that was missed, not a snapshot.
    missed = first_event({"Last-Event-ID": snapshot["id"]})
    assert 'data-seats="4"' in missed["data"]
    assert int(missed["id"]) > int(snapshot["id"])
