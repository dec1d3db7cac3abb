"""Dials a SIP URI into a new routed session with the official Python `opentok` SDK, against our
gateway, exactly as an application server would.

usage: dial.py API_URL API_KEY API_SECRET SIP_URI
Prints one JSON object on stdout. Exits 3 when the `opentok` package is missing.
"""
import json
import sys

try:
    from opentok import Client, MediaModes
except ImportError as e:
    print(f"python package `opentok` is not installed ({e}); run: python3 -m pip install opentok", file=sys.stderr)
    sys.exit(3)


def main():
    api_url, api_key, api_secret, sip_uri = sys.argv[1:5]
    client = Client(api_key, api_secret, api_url=api_url)
    session = client.create_session(media_mode=MediaModes.routed)
    token = client.generate_token(session.session_id, data="sdk-dialled")
    call = client.dial(session.session_id, token, sip_uri, {
        "from": "sdk@example.com",
        "headers": {"X-Sdk": "python"},
        "secure": False,
        "observeForceMute": True,
    })
    print(json.dumps({
        "session": session.session_id,
        "id": call.id,
        "connectionId": call.connectionId,
        "streamId": call.streamId,
    }))


main()
