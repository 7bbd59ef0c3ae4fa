#!/usr/bin/env python3
"""A webhook receiver for the cold-chain demo: what an operations system would run.

It accepts mh-notify's POSTs on 127.0.0.1 (port 0 by default: the system picks one, and the
first line on stderr says "listening on 127.0.0.1:PORT"), checks the X-Mh-Signature header
(sha256=<hex HMAC-SHA256 of the body>, keyed with the contents of --secret-file, read at each
call so the file may be written after the start), answers 204, prints one line per call, and
appends each call to --log as a JSON line:
  {"path": ..., "notification": <X-Mh-Notification>, "signature_ok": true, "body": {...}}
A call with a bad signature is logged and answered 401. Only the Python standard library.
"""
import argparse
import hashlib
import hmac
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY_BYTES = 1 << 20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: any free one)")
    parser.add_argument("--secret-file", required=True, help="the HMAC key mh-notify signs with")
    parser.add_argument("--log", required=True, help="where each call is appended as a JSON line")
    args = parser.parse_args()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0 or length > MAX_BODY_BYTES:
                self.send_error(413)
                return
            body = self.rfile.read(length)
            with open(args.secret_file, "rb") as f:
                secret = f.read().strip()
            want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
            ok = hmac.compare_digest(want, self.headers.get("X-Mh-Signature", ""))
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            record = {"path": self.path, "notification": self.headers.get("X-Mh-Notification"),
                      "signature_ok": ok, "body": parsed}
            with lock:
                with open(args.log, "a") as log:
                    log.write(json.dumps(record, separators=(",", ":")) + "\n")
            text = parsed.get("text") if isinstance(parsed, dict) else None
            print(f"webhook: {'signed' if ok else 'BAD SIGNATURE'} {text}", file=sys.stderr, flush=True)
            self.send_response(204 if ok else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_):  # one line per call is printed above; no access log
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"webhook: listening on 127.0.0.1:{server.server_address[1]}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
