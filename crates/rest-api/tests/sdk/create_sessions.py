"""Creates sessions against our REST server with the official Python `opentok` SDK.

usage: create_sessions.py API_URL API_KEY API_SECRET
Prints one JSON object on stdout. Exits 3 when the `opentok` package is missing.
"""
import json
import sys

try:
    import opentok
    from opentok import Client, MediaModes
except ImportError as e:
    print(f"python package `opentok` is not installed ({e}); run: python3 -m pip install opentok", file=sys.stderr)
    sys.exit(3)


def main():
    api_url, api_key, api_secret = sys.argv[1:4]
    client = Client(api_key, api_secret, api_url=api_url)
    routed = client.create_session(media_mode=MediaModes.routed)
    relayed = client.create_session(media_mode=MediaModes.relayed, location="10.1.2.3")
    default = client.create_session()
    token = client.generate_token(routed.session_id)
    out = {
        "sdk_version": opentok.__version__,
        "routed": routed.session_id,
        "relayed": relayed.session_id,
        "default": default.session_id,
        "token": token,
    }
    try:
        Client(api_key, "wrong" + api_secret, api_url=api_url).create_session()
        out["wrong_secret"] = "accepted"
    except Exception as e:  # on 403 the SDK raises AuthError (wrapped into RequestError by 3.15)
        out["wrong_secret"] = str(e)
    print(json.dumps(out))


main()
