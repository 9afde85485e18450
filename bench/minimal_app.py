"""The floor of what the stack allows for batches: a minimal Flask app with a deque and cached Basic
auth, no request log, no journal, no checks; served by gunicorn exactly as the service is."""

import base64
import os
from collections import deque

import orjson
from flask import Flask, Response, request

app = Flask(__name__)
messages = deque()
# The benchmark's manager credentials, as its wrk script sends them: one dictionary lookup a request.
ALLOWED = {"Basic " + base64.b64encode(os.environ["MINIMAL_APP_CREDENTIALS"].encode()).decode()}


def _allowed():
    return request.headers.get("Authorization") in ALLOWED


@app.post("/push")
def push():
    if not _allowed():
        return {"error": "unauthorized"}, 401
    bodies = [orjson.dumps(m) for m in orjson.loads(request.get_data())["messages"]]
    messages.extend(bodies)
    return {"pushed": len(bodies), "size": len(messages)}, 201


@app.post("/pull")
def pull():
    if not _allowed():
        return {"error": "unauthorized"}, 401
    count = min(int(request.args.get("max", 1)), len(messages))
    taken = [messages.popleft() for _ in range(count)]
    return Response(b'{"messages":[' + b",".join(taken) + b"]}", mimetype="application/json")


@app.get("/size")
def size():
    return {"size": len(messages)}
