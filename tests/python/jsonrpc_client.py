#!/usr/bin/env python3
"""A JSON-RPC 2.0 client in Python 3 with only the standard library (urllib),
against squall's HTTP endpoint, as Go's net/rpc HTTP + JSON example: proves a
client written from docs/PROTOCOL.md ("HTTP + JSON-RPC mapping") alone works.

Usage: jsonrpc_client.py [PATH_TO_jsonrpc_server_EXAMPLE]
(default target/debug/examples/jsonrpc_server; build it with
`cargo build -p squall --features http --example jsonrpc_server`).

Starts the example on port 0 with --test-methods, reads the bound address from
its first line, then checks single calls, batches, notifications, every error
code and the HTTP-level refusals. Exits non-zero on the first failure.
"""

import json
import os
import subprocess
import sys
import unittest
import urllib.error
import urllib.request

SERVER = None
URL = None
BASE = None


def post(body, headers=None, url=None, raw=False):
    """POSTs `body` (JSON-encoded unless raw); returns (HTTP status, parsed body or None, headers)."""
    data = body if raw else json.dumps(body).encode()
    request = urllib.request.Request(url or URL, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = response.read()
            parsed = json.loads(payload) if payload else None
            return response.status, parsed, response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace"), error.headers


def call(method, params=None, id=1, headers=None):
    body = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        body["params"] = params
    status, response, _ = post(body, headers)
    assert status == 200, f"{method}: HTTP {status}: {response}"
    return response


class Single(unittest.TestCase):
    def test_object_params_are_the_single_argument(self):
        response = call("Arith.Multiply", {"a": 7, "b": 8}, id=1)
        self.assertEqual(response, {"jsonrpc": "2.0", "result": 56, "id": 1})

    def test_a_one_element_array_is_the_single_argument(self):
        response = call("Arith.Divide", [{"a": 17, "b": 5}], id="q")
        self.assertEqual(response["result"], {"quo": 3, "rem": 2})
        self.assertEqual(response["id"], "q")

    def test_an_array_of_n_is_the_n_tuple(self):
        self.assertEqual(call("Arith.Add", [2, 3])["result"], 5)

    def test_a_null_id_is_answered_with_a_null_id(self):
        response = call("Arith.Add", [1, 1], id=None)
        self.assertEqual(response["result"], 2)
        self.assertIsNone(response["id"])


class Batch(unittest.TestCase):
    def test_a_batch_answers_each_request_by_id_and_skips_notifications(self):
        status, responses, _ = post([
            {"jsonrpc": "2.0", "method": "Arith.Add", "params": [1, 2], "id": 1},
            {"jsonrpc": "2.0", "method": "Arith.Multiply", "params": {"a": 3, "b": 4}, "id": 2},
            {"jsonrpc": "2.0", "method": "Test.Record"},
            {"jsonrpc": "2.0", "method": "Arith.Nope", "id": 3},
            {"foo": "boo"},
        ])
        self.assertEqual(status, 200)
        self.assertIsInstance(responses, list)
        self.assertEqual(len(responses), 4, responses)
        by_id = {r["id"]: r for r in responses if r["id"] is not None}
        self.assertEqual(by_id[1]["result"], 3)
        self.assertEqual(by_id[2]["result"], 12)
        self.assertEqual(by_id[3]["error"]["code"], -32601)
        invalid = [r for r in responses if r["id"] is None]
        self.assertEqual(invalid[0]["error"]["code"], -32600)

    def test_a_batch_of_non_objects_answers_each_as_invalid(self):
        status, responses, _ = post([1, 2])
        self.assertEqual(status, 200)
        self.assertEqual([r["error"]["code"] for r in responses], [-32600, -32600])


class Notifications(unittest.TestCase):
    def test_notifications_get_204_and_still_run(self):
        before = call("Test.Recorded")["result"]
        status, body, _ = post({"jsonrpc": "2.0", "method": "Test.Record"})
        self.assertEqual((status, body), (204, None))
        status, body, _ = post([
            {"jsonrpc": "2.0", "method": "Test.Record"},
            {"jsonrpc": "2.0", "method": "Test.Record", "params": []},
        ])
        self.assertEqual((status, body), (204, None))
        self.assertEqual(call("Test.Recorded")["result"], before + 3)

    def test_a_failing_notification_is_not_answered(self):
        status, body, _ = post({"jsonrpc": "2.0", "method": "Arith.Nope"})
        self.assertEqual((status, body), (204, None))


class ErrorCodes(unittest.TestCase):
    def assert_error(self, response, code, status=None, executed=None):
        self.assertIn("error", response, response)
        self.assertEqual(response["error"]["code"], code, response)
        data = response["error"]["data"]
        if status is not None:
            self.assertEqual(data["status"], status, response)
        if executed is not None:
            self.assertEqual(data["may_have_executed"], executed, response)
        self.assertIsInstance(data["message"], str)
        self.assertIsInstance(data["retryable"], bool)

    def test_parse_error(self):
        status, response, _ = post(b'{"jsonrpc": "2.0", "method": ', raw=True)
        self.assertEqual(status, 200)
        self.assert_error(response, -32700, "InvalidArgument", False)
        self.assertIsNone(response["id"])

    def test_nesting_beyond_the_limit_is_a_parse_error(self):
        params = "[" * 100 + "]" * 100
        body = '{"jsonrpc":"2.0","method":"Arith.Add","params":%s,"id":1}' % params
        status, response, _ = post(body.encode(), raw=True)
        self.assertEqual(status, 200)
        self.assert_error(response, -32700)

    def test_invalid_request(self):
        status, response, _ = post({"jsonrpc": "1.0", "method": "Arith.Add", "id": 7})
        self.assert_error(response, -32600, executed=False)
        self.assertEqual(response["id"], 7)
        status, response, _ = post([])
        self.assert_error(response, -32600)
        status, response, _ = post({"jsonrpc": "2.0", "method": "Arith.Add", "params": 3, "id": 1})
        self.assert_error(response, -32600)

    def test_method_not_found(self):
        self.assert_error(call("Arith.Nope", [1]), -32601, "NotFound", False)

    def test_invalid_params_that_do_not_decode(self):
        response = call("Arith.Multiply", {"a": "seven", "b": 8})
        self.assert_error(response, -32602, "InvalidArgument", False)

    def test_invalid_params_the_handler_rejects(self):
        response = call("Arith.Divide", {"a": 1, "b": 0})
        self.assert_error(response, -32602, "InvalidArgument", True)
        self.assertIn("divide by zero", response["error"]["message"])

    def test_internal_error_when_a_handler_panics(self):
        self.assert_error(call("Test.Panic"), -32603, "Internal", True)
        # The server lives on.
        self.assertEqual(call("Arith.Add", [2, 2])["result"], 4)

    def test_the_timeout_header_bounds_the_call(self):
        response = call("Test.Sleep", [10000], headers={"Squall-Timeout-Ms": "100"})
        self.assert_error(response, -32000, "DeadlineExceeded", True)

    def test_a_zero_timeout_is_refused_unexecuted(self):
        response = call("Test.Sleep", [10000], headers={"Squall-Timeout-Ms": "0"})
        self.assert_error(response, -32000, "DeadlineExceeded", False)


class Http(unittest.TestCase):
    def test_get_is_405_with_allow_post(self):
        try:
            urllib.request.urlopen(URL, timeout=30)
            self.fail("GET succeeded")
        except urllib.error.HTTPError as error:
            self.assertEqual(error.code, 405)
            self.assertEqual(error.headers["Allow"], "POST")

    def test_another_path_is_404(self):
        status, _, _ = post({"jsonrpc": "2.0", "method": "Arith.Add", "id": 1}, url=BASE + "/rpc")
        self.assertEqual(status, 404)

    def test_another_content_type_is_415(self):
        request = urllib.request.Request(URL, data=b"{}", method="POST")
        request.add_header("Content-Type", "text/plain")
        try:
            urllib.request.urlopen(request, timeout=30)
            self.fail("text/plain was accepted")
        except urllib.error.HTTPError as error:
            self.assertEqual(error.code, 415)

    def test_a_body_over_the_limit_is_413(self):
        # A raw socket, sending on a thread while this one reads: the server may
        # answer 413 and close before the whole body is sent, and a client that
        # only reads after sending then sees a broken pipe instead of the answer.
        import socket
        import threading
        from urllib.parse import urlsplit
        body = b'{"jsonrpc":"2.0","method":"Arith.Add","params":"' + b"x" * (2 * 1024 * 1024) + b'"}'
        target = urlsplit(URL)
        head = (f"POST {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        with socket.create_connection((target.hostname, target.port), timeout=30) as sock:
            def send():
                try:
                    sock.sendall(head + body)
                except OSError:
                    pass  # the server stopped reading: expected once it has answered
            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            reply = b""
            while b"\r\n" not in reply:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
            sender.join(timeout=30)
        status_line = reply.split(b"\r\n", 1)[0].decode(errors="replace")
        self.assertTrue(status_line.startswith("HTTP/1.1 413"), status_line)

    def test_a_malformed_timeout_header_is_400(self):
        status, _, _ = post({"jsonrpc": "2.0", "method": "Arith.Add", "params": [1, 2], "id": 1},
                            headers={"Squall-Timeout-Ms": "soon"})
        self.assertEqual(status, 400)


def main():
    global SERVER, URL, BASE
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "debug", "examples", "jsonrpc_server")
    SERVER = subprocess.Popen([binary, "127.0.0.1:0", "--test-methods"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = SERVER.stdout.readline().strip()
        prefix = "listening on "
        if not line.startswith(prefix):
            print(f"jsonrpc_client.py: the server did not start (first line {line!r})", file=sys.stderr)
            return 1
        URL = line[len(prefix):]
        BASE = URL.rsplit("/", 1)[0]
        suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
        result = unittest.TextTestRunner(verbosity=2).run(suite)
        return 0 if result.wasSuccessful() else 1
    finally:
        SERVER.terminate()
        SERVER.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
