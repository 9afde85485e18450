"""The ui blueprint: the operators' console, HTML pages that poll the JSON API, and their static files.

The pages only read; every change they offer goes through the API's own routes, from the browser.
"""

from pathlib import Path

from flask import Blueprint, render_template, request, send_from_directory

from queues.auth import ANY_ROLE_WITH_ACCESS, auth
from queues.routes import manager, settings

UI_DIR = Path(__file__).resolve().parents[1] / "ui"
STATIC_DIR = UI_DIR / "static"
# No inline script or style, nothing from another origin; fetch only to this service.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_SIZE = 25

bp = Blueprint("ui", __name__, template_folder=str(UI_DIR / "templates"))


@bp.after_app_request
def _protect_ui_responses(response):
    """Every response under /ui (pages, static files, errors) gets the console's browser policy."""
    if request.path == "/ui" or request.path.startswith("/ui/"):
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
    return response


def _viewer():
    """What every page needs to know about the signed-in user."""
    user = auth.current_user()
    return {"user": user.name, "is_admin": user.role == "admin"}


def _dead_letter_sources(infos):
    """{dead-letter queue: [names of the queues that send to it]}."""
    sources = {}
    for info in infos:
        if info.get("dead_letter_queue"):
            sources.setdefault(info["dead_letter_queue"], []).append(info["name"])
    return sources


@bp.get("/ui")
@auth.login_required(role=ANY_ROLE_WITH_ACCESS)
def show_queues():
    infos = manager().list()
    return render_template(
        "ui/queues.html", queues=infos, dead_letter_sources=_dead_letter_sources(infos), **_viewer()
    )


@bp.get("/ui/queues/<name>")
@auth.login_required(role=ANY_ROLE_WITH_ACCESS)
def show_queue(name):
    info = manager().info(name)  # raises the API's 400 or 404 for a bad or unknown name
    infos = manager().list()
    return render_template(
        "ui/queue.html",
        queue=info,
        queue_names=[other["name"] for other in infos],
        sources=_dead_letter_sources(infos).get(name, []),
        page_size=min(PAGE_SIZE, settings().queues.max_batch),
        **_viewer(),
    )


@bp.get("/ui/static/<path:filename>")
@auth.login_required(role=ANY_ROLE_WITH_ACCESS)
def get_static(filename):
    response = send_from_directory(STATIC_DIR, filename)
    # Revalidated (ETag) on every load, so pages and scripts of one release never mix; kept per user.
    response.cache_control.no_cache = True
    response.cache_control.private = True
    return response
