"""The console's pages and static files through Flask's test client: roles, errors, browser policy."""

import re

import pytest

from tests.conftest import basic

PAGES = ["/ui", "/ui/queues/jobs", "/ui/static/console.css", "/ui/static/common.js", "/ui/static/icon.svg"]
# Every answer under /ui: pages, static files, and each kind of error.
UI_RESPONSES = [
    *[(path, "admin", 200) for path in PAGES],
    ("/ui/queues/jobs", "manager", 200),
    ("/ui", None, 401),
    ("/ui/static/list.js", None, 401),
    ("/ui", "auditor", 403),
    ("/ui/queues/nope", "admin", 404),
    ("/ui/queues/bad%20name", "admin", 400),
    ("/ui/static/missing.js", "admin", 404),
    ("/ui/nothing-here", "admin", 404),
]


def get(client, path, user=None, headers=None):
    """GET path, the body read and the response closed (a static file's stays open otherwise)."""
    response = client.get(path, headers=headers if headers is not None else basic(user) if user else {})
    response.get_data()
    response.close()
    return response


@pytest.fixture
def jobs(admin):
    assert admin.post("/queues", json={"name": "jobs"}).status_code == 201
    return admin


@pytest.mark.parametrize(("path", "user", "status"), UI_RESPONSES)
def test_every_ui_response_forbids_inline_script(client, jobs, path, user, status):
    response = get(client, path, user)
    assert response.status_code == status
    policy = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_api_responses_carry_no_console_policy(jobs):
    assert "Content-Security-Policy" not in jobs.get("/queues").headers


@pytest.mark.parametrize("path", ["/ui", "/ui/queues/jobs", "/ui/static/list.js", "/ui/static/console.css"])
@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        (basic("admin", "wrong"), 401, "unauthorized"),
        (basic("auditor"), 403, "forbidden"),
    ],
)
def test_console_and_its_static_files_refuse_without_a_viewing_role(
    client, jobs, path, headers, status, code
):
    response = get(client, path, headers=headers)
    assert response.status_code == status
    assert response.json["error"]["code"] == code
    if status == 401:
        assert response.headers["WWW-Authenticate"] == 'Basic realm="queues"'


@pytest.mark.parametrize("user", ["admin", "manager"])
@pytest.mark.parametrize("path", ["/ui", "/ui/queues/jobs"])
def test_admins_and_managers_see_the_pages_as_html(client, jobs, user, path):
    response = client.get(path, headers=basic(user))
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "jobs" in response.text


def test_unknown_queue_page_is_the_apis_json_error(jobs):
    response = jobs.get("/ui/queues/nope")
    assert response.status_code == 404
    assert response.json["error"] == {"code": "queue_not_found", "message": "queue 'nope' does not exist"}


def test_static_files_cannot_reach_outside_their_folder(client, jobs):
    for path in ["/ui/static/../../app.py", "/ui/static/%2e%2e/%2e%2e/app.py", "/ui/static/..%2F..%2Fapp.py"]:
        response = get(client, path, "admin")
        assert response.status_code == 404 and response.json["error"]["code"] == "not_found"


def test_scripts_are_served_as_javascript_and_revalidated(client, jobs):
    response = get(client, "/ui/static/queue.js", "admin")
    assert response.status_code == 200
    assert response.mimetype in ("text/javascript", "application/javascript")
    assert {"no-cache", "private"} <= {d.strip() for d in response.headers["Cache-Control"].split(",")}
    again = get(
        client, "/ui/static/queue.js", headers={**basic("admin"), "If-None-Match": response.headers["ETag"]}
    )
    assert again.status_code == 304


@pytest.mark.parametrize("path", ["/ui", "/ui/queues/jobs"])
def test_pages_hold_no_inline_script_style_or_event_handler(jobs, path):
    html = jobs.get(path).text
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S | re.I)
    assert scripts and all(body.strip() == "" for body in scripts)
    assert all("src=" in tag for tag in re.findall(r"<script\b[^>]*>", html, flags=re.I))
    assert not re.search(r"\son[a-z]+\s*=", html, flags=re.I)
    assert not re.search(r"\sstyle\s*=", html, flags=re.I)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from another origin


@pytest.mark.parametrize("path", ["/ui", "/ui/queues/jobs"])
def test_manager_pages_hold_no_admin_controls(client, jobs, path):
    controls = [
        'id="new-queue"',
        'id="create-dialog"',
        'id="admin"',
        'id="purge"',
        'id="redrive',
        'id="delete"',
    ]
    admin_html = client.get(path, headers=basic("admin")).text
    manager_html = client.get(path, headers=basic("manager")).text
    assert any(control in admin_html for control in controls)
    assert not any(control in manager_html for control in controls)


def test_list_page_shows_each_queue_with_its_figures(jobs):
    jobs.post("/queues/jobs/push", json={"messages": [{"n": 1}, {"n": 2}, {"n": 3}]})
    jobs.post("/queues", json={"name": "results", "max_messages": 40})
    html = jobs.get("/ui").text.split('<tbody id="queue-rows">')[1].split("</tbody>")[0]
    rows = re.findall(r'<tr class="queue-row" data-name="([^"]*)">(.*?)</tr>', html, flags=re.S)
    assert [name for name, _ in rows] == ["jobs", "results"]
    figures = {name: re.findall(r'data-f="(size|max_messages)">(\d+)<', row) for name, row in rows}
    assert figures["jobs"] == [("size", "3"), ("max_messages", "10000")]
    assert figures["results"] == [("size", "0"), ("max_messages", "40")]


def test_queue_page_names_its_dead_letter_queue_and_sources(jobs):
    jobs.post("/queues", json={"name": "jobs.dead"})
    jobs.post("/queues", json={"name": "work", "max_deliveries": 3, "dead_letter_queue": "jobs.dead"})
    assert 'href="/ui/queues/jobs.dead"' in jobs.get("/ui/queues/work").text
    assert 'href="/ui/queues/work"' in jobs.get("/ui/queues/jobs.dead").text
