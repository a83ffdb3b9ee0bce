"""
Redaction under real servers: request headers logged as they are (Starlette ``Headers`` under
uvicorn, werkzeug ``EnvironHeaders`` under werkzeug's server) and the frameworks' own error lines
(Flask's ``Exception on ...``, Django's ``Internal Server Error: ...``) never show a credential.
"""

from __future__ import annotations

import logging
import sys
import types

import httpx
import pytest
import structlog

from _django import configure_django


configure_django()

from _servers import UvicornThread, WerkzeugThread, WSGIServerThread
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.core.wsgi import get_wsgi_application
from django.test.utils import override_settings
from django.urls import path

from obslog.testing import CapturedLines


R = "[REDACTED]"
# Values that must never appear in any line.
SECRETS = ("tok-SECRET-1abc", "sess-SECRET-2", "key-SECRET-3", "pw-SECRET-4", "tok-SECRET-5xyz")
HEADERS = {
    "Authorization": f"Bearer {SECRETS[0]}",
    "Cookie": f"session={SECRETS[1]}",
    "X-Api-Key": SECRETS[2],
    "X-Shop": "visible",
}
FAILURE = f"cannot reach postgresql://app:{SECRETS[3]}@db/shop with Bearer {SECRETS[4]}"


@pytest.fixture(name="out")
def _out(captured):
    """obslog configured for "shop"; its lines captured (the servers write from their threads)."""
    return captured


def assert_no_secret(text: str) -> None:
    """None of the test's secrets is anywhere in *text*."""
    assert [] == [s for s in SECRETS if s in text]


def headers_of(lines: list[dict], event: str) -> dict:
    """The ``headers`` field of the line whose event is *event*, keys lower-cased."""
    (line,) = [line for line in lines if line["event"] == event]
    return {key.lower(): value for key, value in line["headers"].items()}


def make_starlette():
    """A Starlette app that logs the request's headers through stdlib and through structlog."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def endpoint(request):
        logging.getLogger("shop").info("stdlib headers", extra={"headers": request.headers})
        structlog.get_logger("shop").info("structlog headers", headers=request.headers)
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/h", endpoint)])


def make_flask():
    """A Flask app that logs its request headers and has a view that fails with a DSN in it."""
    from flask import Flask, request

    app = Flask("redaction")

    @app.route("/h")
    def headers():
        logging.getLogger("shop").info("stdlib headers", extra={"headers": request.headers})
        structlog.get_logger("shop").info("structlog headers", headers=request.headers)
        return "ok"

    @app.route("/boom")
    def boom():
        raise RuntimeError(FAILURE)

    return app


def django_boom(request):
    raise RuntimeError(FAILURE)


urls = types.ModuleType("obslog_test_redaction_urls")
urls.urlpatterns = [path("boom/", django_boom)]
sys.modules[urls.__name__] = urls


class TestHeaders:
    def test_starlette_headers_under_uvicorn(self, out):
        """Starlette Headers logged under uvicorn: Authorization, Cookie, X-Api-Key redacted."""
        with UvicornThread(make_starlette()) as base:
            assert 200 == httpx.get(f"{base}/h", headers=HEADERS).status_code
        text, lines = wait_for_lines(out, 2)
        assert_no_secret(text)
        for event in ("stdlib headers", "structlog headers"):
            got = headers_of(lines, event)
            assert (R, R, R, "visible") == (
                got["authorization"], got["cookie"], got["x-api-key"], got["x-shop"]
            )

    def test_werkzeug_environ_headers(self, out):
        """werkzeug EnvironHeaders logged under werkzeug's server: the credentials are redacted."""
        with WerkzeugThread(make_flask()) as base:
            assert 200 == httpx.get(f"{base}/h", headers=HEADERS).status_code
        text, lines = wait_for_lines(out, 2)
        assert_no_secret(text)
        for event in ("stdlib headers", "structlog headers"):
            got = headers_of(lines, event)
            assert (R, R, R, "visible") == (
                got["authorization"], got["cookie"], got["x-api-key"], got["x-shop"]
            )


class TestFrameworkErrorLines:
    def test_flask_exception_on_line(self, out):
        """Flask's "Exception on /boom" line: the DSN password and Bearer token are scrubbed."""
        with WerkzeugThread(make_flask()) as base:
            assert 500 == httpx.get(f"{base}/boom").status_code
        text, lines = wait_for_lines(out, 1)
        assert_no_secret(text)
        (line,) = [r for r in lines if r["event"].startswith("Exception on /boom")]
        assert f"cannot reach postgresql://app:{R}@db/shop with Bearer {R}" == line["exc_message"]
        assert f"postgresql://app:{R}@db/shop" in line["stack"]

    def test_django_internal_server_error_line(self, out):
        """Django's "Internal Server Error" line: the DSN password and Bearer token are scrubbed."""
        with override_settings(ROOT_URLCONF=urls.__name__, MIDDLEWARE=[], DEBUG=False):
            server = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
            server.set_app(get_wsgi_application())
            with WSGIServerThread(server) as base:
                assert 500 == httpx.get(f"{base}/boom/").status_code
            text, lines = wait_for_lines(out, 1)
        assert_no_secret(text)
        (line,) = [r for r in lines if r["event"].startswith("Internal Server Error: /boom/")]
        assert f"cannot reach postgresql://app:{R}@db/shop with Bearer {R}" == line["exc_message"]


def wait_for_lines(captured: CapturedLines, count: int) -> tuple[str, CapturedLines]:
    """Wait until *count* lines (the servers write from their own threads); return all of them."""
    lines = captured.wait_for(lambda ls: len(ls) >= count)
    assert len(lines) >= count
    lines = captured.snapshot()
    return "\n".join(lines.raw), lines
