"""Moderates a live session on our REST server with the official Python `opentok` SDK.

usage: moderate.py API_URL API_KEY API_SECRET PLAN
PLAN is JSON: {"session", "camera", "mic", "alice", "bob", "empty_session",
               "app": {"id", "key_file", "session"}}
(the streams and connections the Rust test put into the session).
Prints one JSON object on stdout: what each SDK call returned or raised.
Exits 3 when the `opentok` package is missing.
"""
import json
import sys

try:
    import opentok
    from opentok import Client
    from opentok.endpoints import Endpoints
except ImportError as e:
    print(f"python package `opentok` is not installed ({e}); run: python3 -m pip install opentok", file=sys.stderr)
    sys.exit(3)


def attempt(call):
    """{"ok": result} or {"error": exception class, "args": its arguments}."""
    try:
        return {"ok": call()}
    except Exception as e:  # the test asserts on which exception the SDK chose
        return {"error": type(e).__name__, "args": [a if isinstance(a, (int, str)) else repr(a) for a in e.args]}


def stream_list(streams):
    return {"count": streams.count, "items": [s.attrs() for s in streams]}


def response(r):
    return {"status": r.status_code, "content_type": r.headers.get("Content-Type"), "json": r.json()}


def main():
    api_url, api_key, api_secret, plan = sys.argv[1:5]
    plan = json.loads(plan)
    client = Client(api_key, api_secret, api_url=api_url)
    sid = plan["session"]
    out = {"sdk_version": opentok.__version__}
    out["list"] = attempt(lambda: stream_list(client.list_streams(sid)))
    out["camera"] = attempt(lambda: client.get_stream(sid, plan["camera"]).attrs())
    out["mic"] = attempt(lambda: client.get_stream(sid, plan["mic"]).attrs())
    out["empty_list"] = attempt(lambda: stream_list(client.list_streams(plan["empty_session"])))
    out["signal_all"] = attempt(lambda: client.send_signal(sid, {"type": "chat", "data": "hello everyone"}))
    out["signal_alice"] = attempt(
        lambda: client.send_signal(sid, {"type": "private", "data": "hello alice"}, plan["alice"])
    )
    out["mute_all"] = attempt(lambda: response(client.mute_all(sid, [plan["camera"]])))
    out["mute_camera"] = attempt(lambda: response(client.mute_stream(sid, plan["camera"])))
    out["disable_force_mute"] = attempt(lambda: response(client.disable_force_mute(sid)))
    out["kick_bob"] = attempt(lambda: client.force_disconnect(sid, plan["bob"]))
    out["kick_bob_again"] = attempt(lambda: client.force_disconnect(sid, plan["bob"]))
    out["signal_bob"] = attempt(lambda: client.send_signal(sid, {"type": "t", "data": "d"}, plan["bob"]))
    out["unknown_stream"] = attempt(lambda: client.get_stream(sid, "00000000-0000-4000-8000-000000000000"))
    wrong = Client(api_key, "wrong" + api_secret, api_url=api_url)
    out["wrong_secret"] = attempt(lambda: stream_list(wrong.list_streams(sid)))

    # An application (RS256, Authorization: Bearer). The SDK pins its base URL to Vonage's host
    # for applications, so point its endpoints at our server.
    app = plan["app"]
    app_client = Client(app["id"], app["key_file"])
    app_client.endpoints = Endpoints(api_url, app_client.api_key)
    out["app_list"] = attempt(lambda: stream_list(app_client.list_streams(app["session"])))
    out["app_kick_unknown"] = attempt(lambda: app_client.force_disconnect(app["session"], plan["alice"]))
    print(json.dumps(out))


main()
