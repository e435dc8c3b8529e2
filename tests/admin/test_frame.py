"""The console's frame: sign-in, sessions, CSRF, roles, language, headers."""

from __future__ import annotations

import re

import sqlalchemy as sa

from lms_domain.tenancy.models import User
from server.admin.sessions import COOKIE
from tests.admin.conftest import Browserish, Console


async def test_pages_need_sign_in(console: Console) -> None:
    client = await _anonymous(console)
    status, _ = await client.get("/admin/learners?q=0711")  # any console page
    assert status == 303
    response = await client.get_response("/admin/learners?q=0711")
    assert response.headers["Location"] == "/admin/login?next=%2Fadmin%2Flearners%3Fq%3D0711"


async def test_sign_in_sets_a_safe_cookie_and_shows_the_dashboard(console: Console) -> None:
    client = await _anonymous(console)
    response = await client.login(console.a.admin)
    assert response.status == 303 and response.headers["Location"] == "/admin"
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/admin"
    assert not cookie["secure"]  # plain http on loopback; behind_https turns it on
    status, html = await client.get("/admin")
    assert status == 200 and "<h1>Dashboard</h1>" in html
    response = await client.get_response("/admin")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"


async def test_wrong_password_is_refused_and_repeated_failures_lock(console: Console) -> None:
    client = await _anonymous(console)
    response = await client.login(console.a.admin, "wrong-password")
    assert response.status == 401
    assert "Wrong username or password." in await response.text()
    statuses = [(await client.login(console.a.admin, "wrong-password")).status for _ in range(6)]
    assert statuses[-1] == 429
    # Locked: even the right password waits.
    assert (await client.login(console.a.admin)).status == 429


async def test_sign_in_without_the_form_token_is_refused(console: Console) -> None:
    client = await _anonymous(console)
    response = await client.client.post(
        "/admin/login", data={"login": console.a.admin, "password": "x"}, allow_redirects=False
    )
    assert response.status == 403
    assert COOKIE not in response.cookies


async def test_posts_need_the_csrf_token(console: Console) -> None:
    client = await console.as_user(console.a.admin)
    response = await client.post("/admin/language", {"lang": "sw"}, csrf=False)
    assert response.status == 403
    response = await client.post("/admin/language", {"lang": "sw", "_csrf": "forged"})
    assert response.status == 403
    # A right token sent from another site is refused too.
    response = await client.client.post(
        "/admin/language",
        data={"lang": "sw", "_csrf": client.csrf},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        allow_redirects=False,
    )
    assert response.status == 403
    status, html = await client.get("/admin")
    assert "<h1>Dashboard</h1>" in html  # the language did not change


async def test_language_switch_renders_kiswahili(console: Console) -> None:
    client = await console.as_user(console.a.admin)
    response = await client.post("/admin/language", {"lang": "sw", "back": "/admin"})
    assert response.status == 303
    status, html = await client.get("/admin")
    assert status == 200 and "<h1>Dashibodi</h1>" in html and 'lang="sw"' in html


async def test_learners_cannot_use_the_console(console: Console) -> None:
    from lms_domain.tenancy.models import Role
    from lms_domain.tenancy.service import create_user
    from tests.admin.conftest import PASSWORD
    from tests.factories import FAST_HASHER

    async with console.makers() as session, session.begin():
        await create_user(
            session=session,
            username="pupil",
            password=PASSWORD,
            role=Role.LEARNER,
            institution_id=console.a.institution.id,
            hasher=FAST_HASHER,
        )
    client = await _anonymous(console)
    response = await client.login("pupil")
    assert response.status == 403 and COOKIE not in response.cookies


async def test_sign_out_ends_the_session(console: Console) -> None:
    client = await console.as_user(console.a.admin)
    response = await client.post("/admin/logout")
    assert response.status == 303
    status, _ = await client.get("/admin")
    assert status == 303


async def test_a_deactivated_login_loses_its_session_at_once(console: Console) -> None:
    client = await console.as_user(console.a.instructor)
    assert (await client.get("/admin"))[0] == 200
    async with console.makers() as session, session.begin():
        await session.execute(sa.update(User).where(User.username == console.a.instructor).values(is_active=False))
    assert (await client.get("/admin"))[0] == 303


async def test_roles_limit_pages(console: Console) -> None:
    instructor = await console.as_user(console.a.instructor)
    status, html = await instructor.get("/admin/audit")
    assert status == 403
    assert "Audit log" not in html.split("<main", 1)[0]  # not offered in the menu either
    status, html = await instructor.get("/admin")
    assert status == 200 and "Revenue today" not in html


async def test_the_next_parameter_never_leaves_the_console(console: Console) -> None:
    client = await _anonymous(console)
    form = await client.client.get("/admin/login?next=//evil.example/x")
    html = await form.text()
    assert 'name="next" value="/admin"' in html
    token = re.search(r'name="_csrf" value="([^"]+)"', html)
    assert token
    response = await client.client.post(
        "/admin/login",
        data={
            "_csrf": token.group(1),
            "login": console.a.admin,
            "password": "correct-horse-battery",
            "next": "https://evil.example",
        },
        allow_redirects=False,
    )
    assert response.headers["Location"] == "/admin"


async def test_static_assets_come_from_the_console_itself(console: Console) -> None:
    client = await console.as_user(console.a.admin)
    status, html = await client.get("/admin")
    sources = re.findall(r'(?:src|href)="([^"]+\.(?:js|css)[^"]*)"', html)
    assert sources and all(s.startswith("/admin/static/") for s in sources)
    for source in sources:
        assert (await client.get(source))[0] == 200


async def _anonymous(console: Console) -> Browserish:
    from aiohttp.test_utils import TestClient

    client = TestClient(console.server)
    await client.start_server()
    console._clients.append(client)
    return Browserish(client)


async def test_sign_in_tries_are_limited_per_client(console: Console) -> None:
    client = await _anonymous(console)
    statuses = [(await client.login(f"nobody-{n}", "wrong-password")).status for n in range(11)]
    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429
    response = await client.client.post("/admin/login", data={}, allow_redirects=False)
    assert response.status == 429 and int(response.headers["Retry-After"]) >= 1


async def test_odd_tokens_and_targets_are_refused_not_crashed(console: Console) -> None:
    client = await console.as_user(console.a.admin)
    response = await client.post("/admin/language", {"lang": "sw", "_csrf": "é"})
    assert response.status == 403
    response = await client.post("/admin/language", {"lang": "sw", "back": "/admin\r\nSet-Cookie: x=1"})
    assert response.status == 303 and response.headers["Location"] == "/admin"
    # A file part where a console form has only text: refused before any handler runs.
    from aiohttp import FormData

    data = FormData()
    data.add_field("_csrf", client.csrf)
    data.add_field("name", b"x", filename="x.txt")
    response = await client.client.post("/admin/edge-nodes", data=data, allow_redirects=False)
    assert response.status == 422


async def test_a_script_calling_after_sign_out_gets_401_not_the_login_form(console: Console) -> None:
    client = await _anonymous(console)
    response = await client.client.post(
        "/admin/notifications/preview", data={"x": "1"}, headers={"X-CSRF-Token": "t"}, allow_redirects=False
    )
    assert response.status == 401


async def test_sign_in_and_out_are_audited(console: Console) -> None:
    from lms_domain.platform.models import AuditLog

    client = await console.as_user(console.a.admin)
    await client.post("/admin/logout")
    async with console.makers() as session:
        actions = list(
            await session.scalars(
                sa.select(AuditLog.action)
                .where(AuditLog.institution_id == console.a.institution.id)
                .order_by(AuditLog.id)
            )
        )
    assert actions == ["auth.sign_in", "auth.sign_out"]
