"""Alert fixtures: checkouts in any state, a real webhook receiver, Celery run in-process."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from access.models import Employee
from assets.models import Asset, Checkout
from lockerhub.alerts import notify
from lockerhub.celery import app as celery_app
from lockerhub.models import WebhookEndpoint
from tests.conftest import WEDNESDAY_10AM, World


def out_checkout(
    world: World,
    *,
    due_at: datetime,
    employee: Employee | None = None,
    slot_number: int = 1,
    status: str = Checkout.Status.ACTIVE,
) -> Checkout:
    """A device taken from ``slot_number`` of the world's bank and (by default) still out."""
    slot = world.slot(slot_number)
    asset = slot.asset or Asset.objects.create(
        asset_tag=f"SC-X{Asset.objects.count():04d}", asset_type=world.scanner
    )
    taken = due_at - timedelta(hours=8)
    return Checkout.objects.create(
        asset=asset,
        employee=employee or world.ana,
        status=status,
        slot_out=slot,
        reserved_at=taken,
        taken_at=taken,
        due_at=due_at,
    )


@pytest.fixture
def due_at_10am(world: World, time_machine) -> Checkout:
    """Ana's scanner fell due at 10:00 on the fixture Wednesday; the clock stands at 10:00."""
    time_machine.move_to(WEDNESDAY_10AM, tick=False)
    world.ana.email = "ana@example.com"
    world.ana.save(update_fields=["email"])
    return out_checkout(world, due_at=WEDNESDAY_10AM)


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """Tasks enqueued after commit run at once, in this process."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


@dataclass
class Received:
    headers: Message  # case-insensitive, as HTTP header names are
    body: bytes
    valid: bool

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A real HTTP server on loopback that checks each request's signature like a receiver would."""

    url: str
    secret: str = ""
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give, in order; then 200
    hold: threading.Event | None = None  # while set, requests wait (a slow receiver)
    arrived: threading.Event = field(default_factory=threading.Event)

    def endpoint(self, **kwargs) -> WebhookEndpoint:
        endpoint = WebhookEndpoint.objects.create(name="Ops hook", url=self.url, **kwargs)
        self.secret = endpoint.secret
        return endpoint


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            valid = notify.verify(
                receiver.secret,
                self.headers.get(notify.TIMESTAMP_HEADER, ""),
                body,
                self.headers.get(notify.SIGNATURE_HEADER, ""),
            )
            receiver.received.append(Received(self.headers, body, valid))
            receiver.arrived.set()
            if receiver.hold is not None:
                receiver.hold.wait(timeout=60)
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            if not valid:
                status = 401
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = WebhookReceiver(url=f"http://127.0.0.1:{server.server_port}/hooks/lockerhub")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    if receiver.hold is not None:
        receiver.hold.set()
    server.shutdown()
    server.server_close()
