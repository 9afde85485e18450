"""The metrics blueprint: GET /metrics, in Prometheus's text format, for admins and managers."""

from flask import Blueprint, Response, current_app

from queues.auth import ANY_ROLE_WITH_ACCESS, auth
from queues.metrics import CONTENT_TYPE

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@auth.login_required(role=ANY_ROLE_WITH_ACCESS)
def get_metrics():
    return Response(current_app.extensions["queues.metrics"].render(), content_type=CONTENT_TYPE)
