"""A stand-in for the EC2 instance metadata service (IMDSv2) of played instances, as AWS documents it:
a session token from PUT /latest/api/token (which needs the TTL header: 400 without), every read with
that token (401 without), and `spot/instance-action` and `events/recommendations/rebalance` answering
404 until EC2 schedules an interruption or sees an elevated risk
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html,
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html).

Each played instance reaches it under its own path (`<url>/<instance id>`); `decide(instance_id)`
says, at each read, whether EC2 has scheduled that instance's interruption."""

import datetime as dt
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class MetadataStandIn:
    def __init__(self, decide, rebalance=lambda instance_id: False):
        self.decide, self.rebalance = decide, rebalance
        self.tokens, self.noticed, self.reads = set(), {}, []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, code, body=b""):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                instance_id, _, path = self.path.lstrip("/").partition("/")
                if path != "latest/api/token" or "X-aws-ec2-metadata-token-ttl-seconds" not in self.headers:
                    return self._answer(400)
                token = secrets.token_hex(8)
                stand_in.tokens.add(token)
                self._answer(200, token.encode())

            def do_GET(self):
                instance_id, _, path = self.path.lstrip("/").partition("/")
                if self.headers.get("X-aws-ec2-metadata-token") not in stand_in.tokens:
                    return self._answer(401)
                stand_in.reads.append((instance_id, path))
                now = dt.datetime.now(dt.timezone.utc)
                if path == "latest/meta-data/spot/instance-action":
                    if instance_id not in stand_in.noticed and stand_in.decide(instance_id):
                        stand_in.noticed[instance_id] = (now + dt.timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
                    if instance_id in stand_in.noticed:
                        body = {"action": "terminate", "time": stand_in.noticed[instance_id]}
                        return self._answer(200, json.dumps(body).encode())
                elif path == "latest/meta-data/events/recommendations/rebalance":
                    if stand_in.rebalance(instance_id):
                        return self._answer(200, json.dumps({"noticeTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")}).encode())
                self._answer(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def endpoint(self, instance_id):
        return f"{self.url}/{instance_id}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
