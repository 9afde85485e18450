"""The operators' console in a real browser (Debian's chromium, driven by Playwright) against gunicorn.

Also takes the README's screenshots: into a temporary folder, or into docs/screenshots with
`make screenshots` (which sets QUEUES_SCREENSHOTS), so that a test run leaves the tree as it was.
"""

import json
import os
import re
import time

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import PASSWORDS, REPO
from tests.test_e2e import JOB

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
# The pages poll every 3 s; a change shows within two polls.
REFRESH_MS = 10_000
README_SCREENSHOTS = REPO / "docs" / "screenshots"


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser, live):
    """Open a console path as a user; fails the test if a page throws or breaks its own policy."""
    contexts, problems = [], []

    def open_(path, user="admin", width=1366, height=900):
        context = browser.new_context(
            base_url=live.base_url,
            http_credentials={"username": user, "password": PASSWORDS[user]},
            viewport={"width": width, "height": height},
        )
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(path)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert problems == []


@pytest.fixture
def queue(live, request):
    """A fresh queue named after the test (max 300 messages); returns (name, admin session)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", ".", f"ui.{request.node.name}")[:56]
    admin = live.session("admin")
    assert admin.post(live.url("/queues"), json={"name": name, "max_messages": 300}).status_code == 201
    yield name, admin
    admin.delete(live.url(f"/queues/{name}"))


def push(live, session, name, messages):
    for start in range(0, len(messages), 100):
        response = session.post(
            live.url(f"/queues/{name}/push"), json={"messages": messages[start : start + 100]}
        )
        assert response.status_code == 201, response.text


def info(live, session, name):
    return session.get(live.url(f"/queues/{name}")).json()


def test_list_shows_a_queue_and_refreshes_its_size_after_pushes(live, open_page, queue):
    name, admin = queue
    page = open_page("/ui")
    row = page.locator(f'tr.queue-row[data-name="{name}"]')
    expect(row.locator("[data-f=size]")).to_have_text("0")
    page.evaluate("window.notReloaded = true")
    push(live, admin, name, [{"n": n} for n in range(7)])
    expect(row.locator("[data-f=size]")).to_have_text("7", timeout=REFRESH_MS)
    expect(row.locator("[data-f=push_rate]")).not_to_have_text("—", timeout=REFRESH_MS)
    expect(row.locator(".mark")).to_have_count(0)
    push(live, admin, name, [{"n": n} for n in range(7, 300)])
    expect(row.locator(".mark")).to_have_text(["full", "growing"], timeout=REFRESH_MS)
    assert page.evaluate("window.notReloaded") is True
    later = f"{name}.b"
    admin.post(live.url("/queues"), json={"name": later})
    try:
        expect(page.locator(f'tr.queue-row[data-name="{later}"] a.qname')).to_have_text(
            later, timeout=REFRESH_MS
        )
    finally:
        admin.delete(live.url(f"/queues/{later}"))
    expect(page.locator(f'tr.queue-row[data-name="{later}"]')).to_have_count(0, timeout=REFRESH_MS)


def shown_numbers(page):
    return [json.loads(text)["n"] for text in page.locator("#messages pre.json").all_inner_texts()]


def test_queue_page_browses_250_messages_page_by_page(live, open_page, queue):
    name, admin = queue
    push(live, admin, name, [{"n": n, "payload": "x" * (n % 7)} for n in range(250)])
    page = open_page(f"/ui/queues/{name}")
    for offset in range(0, 250, 25):
        expect(page.locator("#range")).to_have_text(f"{offset + 1}–{offset + 25} of 250")
        assert shown_numbers(page) == list(range(offset, offset + 25))
        if offset < 225:
            page.click("#next")
    expect(page.locator("#next")).to_be_disabled()
    page.click("#first")
    expect(page.locator("#range")).to_have_text("1–25 of 250")
    assert shown_numbers(page) == list(range(25))
    expect(page.locator("#prev")).to_be_disabled()
    page.click("#last")
    expect(page.locator("#range")).to_have_text("226–250 of 250")
    assert info(live, admin, name)["size"] == 250  # browsing took nothing


def test_markup_in_a_message_is_shown_as_text_and_runs_nothing(live, open_page, queue):
    name, admin = queue
    payload = {
        "script": "<script>window.pwned = 'script'; alert('script')</script>",
        "img": "<img src=x onerror=\"window.pwned = 'img'; alert('img')\">",
        "svg": "<svg onload=\"window.pwned = 'svg'\"></svg>",
    }
    push(live, admin, name, [payload])
    page = open_page(f"/ui/queues/{name}")
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    body = page.locator("#messages pre.json")
    expect(body).to_contain_text("<script>window.pwned")
    assert json.loads(body.inner_text()) == payload
    page.wait_for_timeout(1500)  # time for an injected handler to fire, had there been one
    assert page.evaluate("window.pwned") is None
    assert page.locator("#messages script, #messages img, #messages svg").count() == 0
    assert dialogs == []


def test_message_is_shown_exactly_as_the_service_holds_it(live, open_page, queue):
    name, admin = queue
    message = {
        "big": 12345678901234567890123,
        "precise": 0.1234567890123456789,
        "text": 'snow ☃, a tab\t, a quote " and a line\u2028separator',
        "series": list(range(40)),
        "nested": {"empty": {}, "list": [], "rows": [{"a": 1}, {"b": [None, True, False]}]},
    }
    push(live, admin, name, [message])
    held = admin.get(live.url(f"/queues/{name}/messages")).text
    page = open_page(f"/ui/queues/{name}")
    shown = page.locator("#messages pre.json").inner_text()
    assert json.loads(shown) == json.loads(held)["messages"][0]["message"]
    assert "12345678901234567890123" in shown  # not rounded to a JavaScript number


def test_queue_page_shows_leases_with_their_expiry_and_dead_letters_with_source_and_reason(
    live, open_page, queue
):
    name, admin = queue
    dead, source = f"{name}.dead", f"{name}.src"
    admin.post(live.url("/queues"), json={"name": dead})
    admin.post(live.url("/queues"), json={"name": source, "max_deliveries": 1, "dead_letter_queue": dead})
    try:
        push(live, admin, source, [{"n": n} for n in range(3)])
        leased = admin.post(live.url(f"/queues/{source}/pull?max=2&lease=90")).json()["messages"]
        nack = {"receipt": leased[0]["receipt"], "reason": "price source timed out"}
        assert admin.post(live.url(f"/queues/{source}/nack"), json=nack).status_code == 200
        page = open_page(f"/ui/queues/{source}")
        expect(page.locator("#tab-leased")).to_have_text("Leased · 1", timeout=REFRESH_MS)
        page.click("#tab-leased")
        expect(page.locator("#range")).to_have_text("1–1 of 1")
        expect(page.locator("#messages [data-f=expires]")).to_have_text(
            re.compile(r"lease ends in (1 min )?\d+ s")
        )
        assert json.loads(page.locator("#messages pre.json").inner_text()) == {"n": 1}
        page.goto(f"/ui/queues/{dead}")
        expect(page.locator("#messages .dead")).to_contain_text(
            f"Dead letter from {source} after 1 delivery (price source timed out)"
        )
    finally:
        admin.delete(live.url(f"/queues/{source}"))
        admin.delete(live.url(f"/queues/{dead}"))


def test_queue_page_says_so_when_its_queue_is_deleted_elsewhere(live, open_page, queue):
    name, admin = queue
    page = open_page(f"/ui/queues/{name}")
    expect(page.locator("#gone")).to_be_hidden()
    admin.delete(live.url(f"/queues/{name}"))
    expect(page.locator("#gone")).to_be_visible(timeout=REFRESH_MS)


def test_manager_sees_no_admin_controls_and_the_api_refuses_them(live, open_page, queue):
    name, _ = queue
    page = open_page("/ui", user="manager")
    expect(page.locator(f'tr.queue-row[data-name="{name}"]')).to_be_visible()
    assert page.locator("#new-queue, #create-dialog").count() == 0
    page.goto(f"/ui/queues/{name}")
    expect(page.locator("#size")).to_have_text("0")
    assert page.locator("#admin, #purge, #redrive, #delete, #confirm-ok:visible").count() == 0
    statuses = page.evaluate(
        """async (name) => [
          (await fetch(`/queues/${name}`, {method: "DELETE"})).status,
          (await fetch("/queues", {method: "POST", headers: {"Content-Type": "application/json"},
                                   body: JSON.stringify({name: "by-manager"})})).status,
        ]""",
        name,
    )
    assert statuses == [403, 403]
    assert live.session("admin").get(live.url(f"/queues/{name}")).status_code == 200


def test_admin_purges_from_the_page_after_confirming(live, open_page, queue):
    name, admin = queue
    push(live, admin, name, [{"n": n} for n in range(30)])
    page = open_page(f"/ui/queues/{name}")
    expect(page.locator("#range")).to_have_text("1–25 of 30")
    page.click("#purge")
    expect(page.locator("#confirm")).to_be_visible()
    page.get_by_role("button", name="Cancel").click()
    assert info(live, admin, name)["size"] == 30  # cancelled: nothing purged
    page.click("#purge")
    page.click("#confirm-ok")
    expect(page.locator("#toast")).to_have_text("Purged 30 messages")
    assert info(live, admin, name)["size"] == 0
    expect(page.locator("#size")).to_have_text("0")
    expect(page.locator("#messages-empty")).to_be_visible()


def test_admin_redrives_dead_letters_from_the_page(live, open_page, queue):
    name, admin = queue
    dead = f"{name}.dead"
    source = f"{name}.src"
    assert admin.post(live.url("/queues"), json={"name": dead}).status_code == 201
    created = admin.post(
        live.url("/queues"), json={"name": source, "max_deliveries": 1, "dead_letter_queue": dead}
    )
    assert created.status_code == 201
    try:
        push(live, admin, source, [{"n": n} for n in range(4)])
        leased = admin.post(live.url(f"/queues/{source}/pull?max=4&lease=60")).json()["messages"]
        for message in leased:
            admin.post(live.url(f"/queues/{source}/nack"), json={"receipt": message["receipt"]})
        assert info(live, admin, dead)["size"] == 4
        page = open_page(f"/ui/queues/{dead}")
        expect(page.locator("#messages .dead").first).to_contain_text(f"Dead letter from {source}")
        page.click("#redrive")
        expect(page.locator("#toast")).to_have_text("Moved 4 dead letters; 0 remain")
        assert info(live, admin, dead)["size"] == 0
        assert info(live, admin, source)["size"] == 4
        expect(page.locator("#size")).to_have_text("0")
    finally:
        admin.delete(live.url(f"/queues/{source}"))
        admin.delete(live.url(f"/queues/{dead}"))


def test_admin_creates_and_deletes_a_queue_from_the_pages(live, open_page, queue):
    name, admin = queue
    new, dead = f"{name}.new", f"{name}.dlq"
    page = open_page("/ui")
    admin.post(live.url("/queues"), json={"name": dead})  # after the page: the form learns of it by polling
    expect(page.locator(f'tr.queue-row[data-name="{dead}"]')).to_be_visible(timeout=REFRESH_MS)
    try:
        page.click("#new-queue")
        page.fill("#create-form [name=name]", new)
        page.fill("#create-form [name=max_messages]", "40")
        page.select_option("#create-form [name=schema]", "job")
        page.select_option("#create-form [name=dead_letter_queue]", dead)
        page.fill("#create-form [name=max_deliveries]", "4")
        page.click("#create-form button[type=submit]")
        row = page.locator(f'tr.queue-row[data-name="{new}"]')
        expect(row.locator("[data-f=max_messages]")).to_have_text("40")
        created = info(live, admin, new)
        assert (created["max_messages"], created["schema"]) == (40, "job")
        assert (created["dead_letter_queue"], created["max_deliveries"]) == (dead, 4)
        row.locator("a.qname").click()
        expect(page).to_have_url(re.compile(f"/ui/queues/{re.escape(new)}$"))
        page.click("#delete")
        page.click("#confirm-ok")
        expect(page).to_have_url(re.compile(r"/ui$"))
        assert admin.get(live.url(f"/queues/{new}")).status_code == 404
    finally:
        admin.delete(live.url(f"/queues/{new}"))
        admin.delete(live.url(f"/queues/{dead}"))


def test_screenshots_of_the_list_and_a_queue_page(live, open_page, tmp_path):
    """The README's two pictures: a few queues under a changing load, and a queue's messages."""
    if live.backend != "memory":
        pytest.skip("the screenshots are taken once, on the memory backend")
    admin = live.session("admin")
    for body in [
        {"name": "jobs.dead"},
        {
            "name": "jobs",
            "max_messages": 500,
            "schema": "job",
            "max_deliveries": 3,
            "dead_letter_queue": "jobs.dead",
        },
        {"name": "results", "max_messages": 200, "schema": "result"},
        {"name": "prices.eod", "max_messages": 60},
    ]:
        assert admin.post(live.url("/queues"), json=body).status_code == 201
    try:
        folder = README_SCREENSHOTS if os.environ.get("QUEUES_SCREENSHOTS") else tmp_path
        _screenshots(live, admin, open_page, folder)
    finally:
        for name in ["jobs", "jobs.dead", "results", "prices.eod"]:
            admin.delete(live.url(f"/queues/{name}"))


def _screenshots(live, admin, open_page, folder):
    desk = {"owner": "rates-desk", "type": "moving_average", "assets": ["AAPL", "MSFT", "NVDA"]}
    jobs = [
        {**JOB, **desk, "id": f"job-{n:04d}", "parameters": {"window": 20 + n % 3 * 10}} for n in range(60)
    ]
    for job in jobs[3::7]:  # a few long ones, which the page folds
        job["parameters"]["weights"] = {f"T{n:02d}": round(1 / (n + 2), 4) for n in range(16)}
    push(live, admin, "prices.eod", [{"ticker": f"T{n}", "close": 100 + n} for n in range(57)])
    push(live, admin, "jobs.dead", [{**JOB, "id": "job-0000-old"}])
    pages = {
        "queues.png": open_page("/ui", width=1280, height=640),
        "queue.png": open_page("/ui/queues/jobs"),
    }
    for step in range(12):  # a load that rises, so the charts, rates and marks have something to show
        push(live, admin, "jobs", jobs[step * 5 : step * 5 + 5])
        admin.post(live.url("/queues/jobs/pull?max=2"))
        results = [
            {
                "id": f"r{step}-{n}",
                "job_id": "j",
                "timestamp": JOB["timestamp"],
                "assets": ["AAPL"],
                "results": {},
            }
            for n in range(step + 3)
        ]
        push(live, admin, "results", results)
        admin.post(live.url(f"/queues/results/pull?max={step + 1}"))
        time.sleep(1.5)
    admin.post(live.url("/queues/jobs/pull?max=3&lease=300"))
    expect(pages["queues.png"].locator('tr.queue-row[data-name="prices.eod"] .mark')).to_have_text(
        "nearly full"
    )
    expect(pages["queue.png"].locator("#in_flight")).to_have_text("3", timeout=REFRESH_MS)
    expect(pages["queues.png"].locator('tr[data-name="jobs"] [data-f=in_flight]')).to_have_text(
        "3", timeout=REFRESH_MS
    )
    expect(pages["queue.png"].locator("#messages .fold:visible").first).to_have_text(
        re.compile(r"Show all \d+ lines")
    )
    folder.mkdir(parents=True, exist_ok=True)
    for file, page in pages.items():
        page.screenshot(path=folder / file)
        assert (folder / file).stat().st_size > 10_000
