"""
The health mount in each framework's module: Django's new adapter on real servers (Django's
threaded WSGI server and uvicorn), the old adapter names in obslog.health, and the package
layout (importing obslog.health imports no web framework).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import pathlib
import subprocess
import sys
import time
import types

import httpx
import pytest

from _servers import UvicornThread, WSGIServerThread

import obslog.health

from obslog.health import Readiness


LOADED_SLACK = 0.5
"""Seconds a loaded 2-core machine may add to a latency promise; bench_health.py measures it."""

# --------------------------------------------------------------------------- Django


def _django_urls(readiness: Readiness, *, asynchronous: bool) -> str:
    """Register a URLconf module with the tiers under /ops/ beside one app view; return its name."""
    from django.http import HttpResponse
    from django.urls import include, path

    import obslog.django

    def home(request):
        return HttpResponse("home")

    name = f"obslog_test_health_urls_{'async' if asynchronous else 'sync'}"
    urls = types.ModuleType(name)
    urls.urlpatterns = [
        path("", home),
        path("ops/", include(obslog.django.health_urls(readiness, asynchronous=asynchronous))),
    ]
    sys.modules[name] = urls
    return name


@pytest.fixture(name="django_app")
def _django_app():
    """Configure Django once (as tests/test_django.py does); yield a way to route to a URLconf."""
    from _django import configure_django

    configure_django()
    from django.test.utils import override_settings

    def routed(urlconf: str):
        return override_settings(
            ROOT_URLCONF=urlconf,
            MIDDLEWARE=[
                "obslog.django.ObslogMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
            ],
            ALLOWED_HOSTS=["127.0.0.1", "localhost"],
            DEBUG=False,
        )

    return routed


def _django_wsgi() -> WSGIServerThread:
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    server = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
    server.set_app(get_wsgi_application())
    return WSGIServerThread(server)


def _django_asgi() -> UvicornThread:
    from django.core.asgi import get_asgi_application

    return UvicornThread(get_asgi_application(), lifespan="off")


def _hang_forever() -> Readiness:
    readiness = Readiness(budget=0.3, ttl=0)

    async def hang() -> bool:
        await asyncio.sleep(60)
        return True

    readiness.add("hang", hang)
    return readiness


def _always() -> Readiness:
    readiness = Readiness()
    readiness.add("always", lambda: True)
    return readiness


class TestDjango:
    @pytest.mark.parametrize(
        ("asynchronous", "server"),
        [(False, _django_wsgi), (True, _django_asgi)],
        ids=["sync-views-wsgi", "async-views-uvicorn"],
    )
    def test_tiers_beside_the_app(self, django_app, asynchronous, server):
        """Under a real server, health_urls() included under ops/ answers the three tiers, HEAD
        and 405 (CSRF checks do not apply), next to the app's own view."""
        urlconf = _django_urls(_always(), asynchronous=asynchronous)
        with django_app(urlconf), server() as base, httpx.Client(base_url=base) as client:
            health = client.get("/ops/health")
            ready = client.get("/ops/ready")
            head = client.head("/ops/ready")
            post = client.post("/ops/ready")
            metrics = client.get("/ops/metrics")
            home = client.get("/")

        assert (200, {"status": "ok"}) == (health.status_code, health.json())
        assert (200, "ok") == (ready.status_code, ready.json()["checks"]["always"]["status"])
        assert (200, b"") == (head.status_code, head.content)
        assert (405, "GET, HEAD") == (post.status_code, post.headers["allow"])
        assert metrics.headers["content-type"].startswith("text/plain")
        assert b"python_info" in metrics.content
        assert "home" == home.text

    @pytest.mark.parametrize(
        ("asynchronous", "server"),
        [(False, _django_wsgi), (True, _django_asgi)],
        ids=["sync-views-wsgi", "async-views-uvicorn"],
    )
    def test_hanging_check_503_within_budget(self, django_app, asynchronous, server):
        """A check that never returns gives 503 "timeout" within the budget under Django."""
        urlconf = _django_urls(_hang_forever(), asynchronous=asynchronous)
        with django_app(urlconf), server() as base:
            start = time.monotonic()
            ready = httpx.get(f"{base}/ops/ready", timeout=5)
            elapsed = time.monotonic() - start

        assert (503, "timeout") == (ready.status_code, ready.json()["checks"]["hang"]["status"])
        assert elapsed < 0.3 + LOADED_SLACK

    def test_views_are_sync_or_async_as_asked(self, django_app):
        """asynchronous=True gives coroutine views (for the server's loop), else sync ones."""
        import obslog.django

        sync = obslog.django.health_urls()
        async_ = obslog.django.health_urls(asynchronous=True)

        assert ["obslog-health", "obslog-ready", "obslog-metrics"] == [p.name for p in sync]
        assert [False] * 3 == [inspect.iscoroutinefunction(p.callback) for p in sync]
        assert [True] * 3 == [inspect.iscoroutinefunction(p.callback) for p in async_]


# --------------------------------------------------------------------------- layout


OLD_NAMES = {
    "make_asgi_app": ("obslog.asgi", "make_health_app"),
    "make_wsgi_app": ("obslog.wsgi", "make_health_app"),
    "add_aiohttp_routes": ("obslog.aiohttp", "add_health_routes"),
    "make_aiohttp_handler": ("obslog.aiohttp", "make_health_handler"),
}


class TestLayout:
    def test_every_public_name_importable(self):
        """Every name in obslog.health.__all__ (0.1 names included) imports; dir() lists it."""
        namespace: dict = {}
        exec("from obslog.health import *", namespace)

        assert set(obslog.health.__all__) <= set(namespace)
        assert set(obslog.health.__all__) <= set(dir(obslog.health))
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            obslog.health.nope  # noqa: B018

    @pytest.mark.parametrize("old", sorted(OLD_NAMES))
    def test_old_adapter_names_are_the_framework_modules_functions(self, old):
        """The adapter names of obslog.health are the functions of the framework's module."""
        module, name = OLD_NAMES[old]

        assert getattr(importlib.import_module(module), name) is getattr(obslog.health, old)

    @pytest.mark.parametrize(
        ("module", "names"),
        [
            ("obslog.asgi", {"make_health_app"}),
            ("obslog.wsgi", {"make_health_app"}),
            ("obslog.flask", {"add_health"}),
            ("obslog.aiohttp", {"add_health_routes", "make_health_handler"}),
            ("obslog.django", {"health_urls"}),
        ],
    )
    def test_each_framework_module_offers_its_health_mount(self, module, names):
        """Every framework module lists its health mount in __all__, with a docstring."""
        mod = importlib.import_module(module)

        assert names <= set(mod.__all__)
        assert all(inspect.getdoc(getattr(mod, name)) for name in names)

    def test_importing_health_imports_no_framework(self):
        """`import obslog.health` (and using its core) loads no web framework."""
        code = (
            "import sys, obslog.health as h\n"
            "h.HealthEndpoints(h.Readiness()).handle('/ready')\n"
            "import json\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'aiohttp', 'django', 'flask', 'starlette', 'fastapi', 'werkzeug', 'uvicorn'})))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout

        assert [] == json.loads(out)

    def test_modules_stay_small(self):
        """Each module of the obslog.health package stays under 600 lines."""
        package = pathlib.Path(obslog.health.__file__).parent
        sizes = {p.name: len(p.read_text().splitlines()) for p in package.glob("*.py")}

        assert {} == {name: n for name, n in sizes.items() if n >= 600}

    def test_public_classes_show_the_public_module(self):
        """The package's classes report obslog.health as their module, as before the split."""
        for name in ("CheckResult", "HealthEndpoints", "HealthServer", "Readiness", "ReadyReport"):
            assert "obslog.health" == getattr(obslog.health, name).__module__
