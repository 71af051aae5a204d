"""A live booking page on Tessera's SDK: FastAPI, Jinja templates, Server-Sent Events.

Everything a booking does is decided by Tessera's SQL functions; this app only turns HTTP into
SDK calls and SDK errors into HTTP answers:

- Pages (event list, event page) are rendered for everyone with the anonymous client.
- The browser holds the user's access token (a Supabase session JWT) and sends it as
  ``Authorization: Bearer …``. :func:`signed_in` hands it to ``tessera.as_user(token)``,
  which verifies it with the JWT secret the client was created with: the app never trusts
  a user id it did not get from a verified token.
- Live numbers travel from the SDK's realtime streams (``watch_event``,
  ``watch_my_bookings``) to the browser as Server-Sent Events carrying HTML fragments.
  An event's availability is public, so the browser uses a plain ``EventSource``. A user's
  bookings are private: ``EventSource`` cannot send an ``Authorization`` header, so the
  browser reads that stream with ``fetch`` (which can), instead of putting the token in a
  URL or a cookie.
- Errors: :func:`tessera_error` maps each Tessera exception class to a status and a
  sentence (sold out 409, rate limited 429 with ``Retry-After``, bad token 401, …).

Run it with ``scripts/web`` (see README), or ``create_app(Settings(...))`` under any ASGI
server.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from tessera_client import (
    AlreadyBooked,
    AsyncTessera,
    AuthenticationFailed,
    Availability,
    Booking,
    BookingNotFound,
    BookingStatus,
    ChangeStream,
    Event,
    EventNotFound,
    IdempotencyConflict,
    InvalidParameter,
    InvalidSeats,
    InvalidTransition,
    PermissionDenied,
    RateLimited,
    SalesClosed,
    SoldOut,
    TesseraError,
    TimedOut,
    Unavailable,
)
from tessera_client.local import local_user_token

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

ACTIVE = (BookingStatus.CONFIRMED, BookingStatus.OFFERED, BookingStatus.WAITLISTED)


@dataclass(frozen=True)
class Settings:
    """How the app reaches Tessera.

    Attributes:
        database_url: Login of the ``authenticator`` role, as PostgREST logs in.
        jwt_secret: Verifies the access tokens browsers send (the project's JWT secret).
        dev_admin_url: Enables the development sign-in page, which lists and creates users
            of the local stack and signs tokens for them. Never set it in production, where
            people sign in through Supabase Auth instead.
    """

    database_url: str
    jwt_secret: str
    dev_admin_url: str | None = None


# -- identity ---------------------------------------------------------------------------------


def tessera(request: Request) -> AsyncTessera:
    """The app's client (anonymous): public pages and streams."""
    client: AsyncTessera = request.app.state.tessera
    return client


def signed_in(
    client: Annotated[AsyncTessera, Depends(tessera)],
    authorization: Annotated[str | None, Header()] = None,
) -> AsyncTessera:
    """The client acting as the user whose access token came with the request.

    Raises:
        AuthenticationFailed: No bearer token, or one that does not verify (expired, wrongly
            signed, not a JWT): the answer is 401.
    """
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed("sign in first", hint="Send Authorization: Bearer <token>.")
    me = client.as_user(token)  # verifies the token with the client's jwt_secret
    if me.identity.role != "authenticated":  # e.g. the anon key: valid, but nobody
        raise AuthenticationFailed("not a user's token", hint="Sign in as a user.")
    return me


Me = Annotated[AsyncTessera, Depends(signed_in)]
Anyone = Annotated[AsyncTessera, Depends(tessera)]


async def availability_now(event_id: uuid.UUID, anyone: Anyone) -> Availability:
    """The event's numbers now; as a dependency, a missing event is a 404 before a stream
    starts (an ``EventSource`` gives up on an error status instead of retrying)."""
    return await anyone.availability(event_id)


# -- errors -----------------------------------------------------------------------------------

# Most specific class first: the first match wins.
ERRORS: list[tuple[type[TesseraError], int, str]] = [
    (SoldOut, 409, "Sold out: no seats left and the waitlist is full."),
    (AlreadyBooked, 409, "You already have a booking for this event."),
    (SalesClosed, 409, "Booking is closed for this event."),
    (IdempotencyConflict, 409, "That request was already used for a different booking."),
    (InvalidTransition, 409, "That booking can no longer be changed (an offer may have expired)."),
    (InvalidSeats, 422, "That number of seats cannot be booked for this event."),
    (InvalidParameter, 422, "That request is not valid."),
    (EventNotFound, 404, "There is no such event."),
    (BookingNotFound, 404, "There is no such booking of yours."),
    (RateLimited, 429, "Too many requests: wait a moment and try again."),
    (AuthenticationFailed, 401, "Your session is missing, invalid or expired: sign in again."),
    (PermissionDenied, 403, "You are not allowed to do that."),
    (TimedOut, 503, "Tessera is busy: try again in a moment."),
    (Unavailable, 503, "Tessera cannot be reached: try again in a moment."),
]


def error_answer(error: TesseraError) -> tuple[int, str, dict[str, str]]:
    """The HTTP status, sentence and headers for a Tessera error."""
    status, message = next(
        ((status, text) for cls, status, text in ERRORS if isinstance(error, cls)),
        (500, "Something went wrong."),
    )
    headers: dict[str, str] = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after or 1)
    elif isinstance(error, TimedOut | Unavailable):
        headers["Retry-After"] = "1"
    elif isinstance(error, AuthenticationFailed):
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return status, message, headers


async def tessera_error(request: Request, error: Exception) -> Response:
    """One place turns every Tessera error into an answer: JSON for the API, else a page."""
    assert isinstance(error, TesseraError)
    status, message, headers = error_answer(error)
    if request.url.path.startswith("/api/"):
        body = {"error": type(error).__name__, "code": error.code, "message": message}
        return JSONResponse(body, status_code=status, headers=headers)
    return templates.TemplateResponse(
        request, "error.html", {"message": message}, status_code=status, headers=headers
    )


# -- rendering --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MyBooking:
    """A booking with what the page shows next to it."""

    booking: Booking
    event: Event
    position: int | None


async def my_active_bookings(me: AsyncTessera) -> list[MyBooking]:
    """The user's confirmed, offered and waiting bookings, with titles and positions."""

    async def describe(booking: Booking) -> MyBooking:
        event = await me.get_event(booking.event_id)
        waiting = booking.status == BookingStatus.WAITLISTED
        position = await me.waitlist_position(booking.id) if waiting else None
        return MyBooking(booking, event, position)

    bookings = [b for b in await me.my_bookings() if b.status in ACTIVE]
    return list(await asyncio.gather(*(describe(b) for b in bookings)))


def fragment(name: str, **context: Any) -> str:
    """A template rendered on its own, to send over a stream."""
    return templates.get_template(name).render(**context)


def availability_event(seats: int, waiting: int, status: str, seq: int) -> ServerSentEvent:
    """Seats left and waitlist length as an SSE event; its id lets a reconnect resume."""
    return ServerSentEvent(
        event="availability", raw_data=availability_html(seats, waiting, status), id=str(seq)
    )


@functools.lru_cache(maxsize=1024)
def availability_html(seats: int, waiting: int, status: str) -> str:
    # Every watcher of an event gets the same numbers after a change: render them once.
    return fragment("_availability.html", seats=seats, waiting=waiting, status=status)


# -- the app ----------------------------------------------------------------------------------


def create_app(settings: Settings) -> FastAPI:
    """The booking site, talking to Tessera as ``settings`` say."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncTessera.connect(
            settings.database_url, jwt_secret=settings.jwt_secret
        ) as client:
            app.state.tessera = client
            yield

    app = FastAPI(title="Tessera bookings", lifespan=lifespan)
    app.add_exception_handler(TesseraError, tessera_error)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/", response_class=HTMLResponse)
    async def event_list(request: Request, anyone: Anyone) -> Response:
        events = await anyone.list_events(status="published", starts_after=datetime.now(UTC))
        numbers = await asyncio.gather(*(anyone.availability(e.id) for e in events))
        return templates.TemplateResponse(
            request, "events.html", {"events": list(zip(events, numbers, strict=True))}
        )

    @app.get("/events/{event_id}", response_class=HTMLResponse)
    async def event_page(request: Request, event_id: uuid.UUID, anyone: Anyone) -> Response:
        event = await anyone.get_event(event_id)
        available = await anyone.availability(event_id)
        return templates.TemplateResponse(
            request, "event.html", {"event": event, "available": available}
        )

    @app.get("/api/events/{event_id}/availability", response_class=EventSourceResponse)
    async def availability_stream(
        anyone: Anyone,
        now: Annotated[Availability, Depends(availability_now)],
        last_event_id: Annotated[int | None, Header()] = None,
    ) -> AsyncIterator[ServerSentEvent]:
        """Seats left and waitlist length, now and after every change (public)."""
        if last_event_id is None:  # a first visit: the numbers now, then every change after
            yield availability_event(
                now.seats_available, now.waitlist_count, now.status, now.last_seq
            )
            last_event_id = now.last_seq
        # A reconnecting EventSource sends Last-Event-ID: carry on after it, nothing lost.
        async with anyone.watch_event(now.event_id, after_seq=last_event_id) as changes:
            async for change in changes:
                yield availability_event(
                    change.seats_available, change.waitlist_count, change.event_status, change.seq
                )
        yield ServerSentEvent(event="end", raw_data="")  # the event was cancelled

    @app.get("/api/my-bookings", response_class=EventSourceResponse)
    async def my_bookings_stream(me: Me) -> AsyncIterator[ServerSentEvent]:
        """The user's bookings, now and again whenever one of them (or its place) changes."""
        shown = None
        async for bookings in my_bookings_moments(me):
            html = fragment("_bookings.html", bookings=bookings)
            if html != shown:
                shown = html
                yield ServerSentEvent(event="bookings", raw_data=html)

    @app.post("/api/events/{event_id}/bookings")
    async def book(
        event_id: uuid.UUID,
        me: Me,
        seats: int = 1,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Book, or join the waitlist. The browser sends one Idempotency-Key per click of
        Book, so a double click (or a retried request) returns the same booking."""
        booking = await me.book(event_id, seats, idempotency_key=idempotency_key)
        if booking.status == BookingStatus.WAITLISTED:
            message = f"The event is full: you are on the waitlist, #{booking.waitlist_position}."
        elif booking.status == BookingStatus.OFFERED:
            message = "Seats are held for you: claim them before the offer expires."
        else:
            message = f"Booked: {booking.seats} seat(s) confirmed."
        return {"booking_id": str(booking.id), "status": booking.status, "message": message}

    @app.post("/api/bookings/{booking_id}/cancel")
    async def cancel(booking_id: uuid.UUID, me: Me) -> dict[str, Any]:
        booking = await me.cancel(booking_id)
        return {"booking_id": str(booking.id), "status": booking.status, "message": "Cancelled."}

    @app.post("/api/bookings/{booking_id}/claim")
    async def claim(booking_id: uuid.UUID, me: Me) -> dict[str, Any]:
        booking = await me.claim_offer(booking_id)
        return {"booking_id": str(booking.id), "status": booking.status, "message": "Confirmed."}

    if settings.dev_admin_url:
        add_dev_sign_in(app, settings.dev_admin_url, settings.jwt_secret)
    return app


async def my_bookings_moments(me: AsyncTessera) -> AsyncIterator[list[MyBooking]]:
    """The user's active bookings now, then again whenever they may look different.

    ``watch_my_bookings`` reports every change to the user's own bookings. A waiting
    booking's *position* also moves when someone ahead of it leaves the queue, which is a
    change to someone else's booking: for that, the events the user waits for are watched
    too. Each stream is subscribed before the bookings are read, so no change falls between.
    """
    wake = asyncio.Event()
    following: dict[uuid.UUID | None, asyncio.Task[None]] = {}

    async def follow(key: uuid.UUID | None, stream: ChangeStream) -> None:
        await stream.start()
        following[key] = asyncio.create_task(wake_on_changes(stream))

    async def wake_on_changes(stream: ChangeStream) -> None:
        try:
            async with stream:
                async for _change in stream:
                    wake.set()
        finally:
            wake.set()

    await follow(None, me.watch_my_bookings())
    try:
        while True:
            bookings = await my_active_bookings(me)
            yield bookings
            waiting = {b.event.id for b in bookings if b.booking.status == "waitlisted"}
            for event_id in following.keys() - waiting - {None}:
                following.pop(event_id).cancel()
            new = waiting - following.keys()
            for event_id in new:
                await follow(event_id, me.watch_event(event_id))
            if not new:  # else read again at once: a change may have come before the watch
                await wake.wait()
                wake.clear()
            for task in following.values():
                error = task.exception() if task.done() and not task.cancelled() else None
                if error is not None:  # end this stream too: the browser reconnects afresh
                    raise error

    finally:
        for task in following.values():
            task.cancel()


# -- development sign-in ----------------------------------------------------------------------


def add_dev_sign_in(app: FastAPI, admin_url: str, jwt_secret: str) -> None:
    """A sign-in page for the local stack: pick a person, get a token signed like Supabase
    Auth's. In production the browser gets its token from Supabase Auth instead."""

    @app.get("/dev/sign-in", response_class=HTMLResponse)
    async def sign_in_page(request: Request) -> Response:
        async with await psycopg.AsyncConnection.connect(admin_url) as conn:
            cursor = await conn.execute(
                "select id, email from auth.users where email is not null"
                " order by created_at, email limit 20"
            )
            people = await cursor.fetchall()
        return templates.TemplateResponse(request, "sign_in.html", {"people": people})

    @app.post("/api/dev/token")
    async def dev_token(email: str) -> dict[str, str]:
        """An access token for the local user with this email (created when new)."""
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
            cursor = await conn.execute(
                "insert into auth.users (id, email) values (gen_random_uuid(), %s)"
                " on conflict (email) do update set email = excluded.email returning id",
                (email,),
            )
            row = await cursor.fetchone()
        assert row is not None
        token = local_user_token(jwt_secret, row[0], email=email)
        return {"access_token": token}
