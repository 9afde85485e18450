"""The baseline: a do-nothing Flask endpoint, served by gunicorn exactly as the service is."""

from flask import Flask

app = Flask(__name__)


@app.post("/noop")
def noop():
    return {"ok": True}
