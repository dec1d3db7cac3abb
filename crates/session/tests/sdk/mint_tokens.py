"""Mints tokens with the official Python `opentok` SDK for crates/session/tests/sdk_tokens.rs.

usage: mint_tokens.py API_KEY API_SECRET SESSION_ID APP_ID APP_SESSION_ID WORK_DIR
Prints one JSON object on stdout. Exits 3 when the `opentok` package is missing.
"""
import json
import os
import sys

try:
    import opentok
    from opentok import Client, Roles
except ImportError as e:  # the Rust test turns this into a failure naming the package
    print(f"python package `opentok` is not installed ({e}); run: python3 -m pip install opentok", file=sys.stderr)
    sys.exit(3)


def main():
    api_key, api_secret, session_id, app_id, app_session_id, work_dir = sys.argv[1:7]
    out = {"sdk_version": opentok.__version__}

    legacy = Client(api_key, api_secret)
    out["t1"] = legacy.generate_token(
        session_id,
        role=Roles.moderator,
        data="name=Alice Smith&team=a+b",
        initial_layout_class_list=["focus", "full"],
        use_jwt=False,
    )
    out["t1_default"] = legacy.generate_token(session_id, use_jwt=False)
    out["jwt"] = legacy.generate_token(
        session_id,
        role=Roles.publisher_only,
        data="user 42",
        initial_layout_class_list=["big"],
    )
    out["jwt_default"] = legacy.generate_token(session_id)
    out["rest"] = legacy.get_headers()["X-OPENTOK-AUTH"]

    # An application: the SDK reads the private key from a file whose name ends in ".key".
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = os.path.join(work_dir, "application.key")
    with open(key_path, "wb") as f:
        f.write(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    out["app_public_pem"] = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    app = Client(app_id, key_path)
    out["app_jwt"] = app.generate_token(app_session_id, role=Roles.subscriber, data="app user")
    out["app_rest"] = app.get_headers()["Authorization"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
