#!/usr/bin/env python3
"""A TLS HTTP backend for bootlab-lb's tests (a real peer, like an OKD
master's kube-apiserver as far as the balancer can tell).

    tls_backend.py NAME CERT KEY PORT STATE_DIR

GET /whoami answers NAME; GET /readyz answers 200, or 500 while the file
STATE_DIR/unready exists (the test switches it at run time). HTTP/1.1
keep-alive. Prints the bound port on stdout's first line.
"""
import http.server
import os
import ssl
import sys

name, cert, key, port, state = sys.argv[1:6]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        # The handshake runs in the connection's thread, never in accept.
        self.request.settimeout(30)
        self.request = context.wrap_socket(self.request, server_side=True)
        super().setup()

    def do_GET(self):
        if self.path == "/readyz":
            ready = not os.path.exists(os.path.join(state, "unready"))
            code, body = (200, b"ok\n") if ready else (500, b"not ready\n")
        elif self.path == "/whoami":
            code, body = 200, (name + "\n").encode()
        else:
            code, body = 404, b"not found\n"
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def handle_error(self, request, client_address):
        # tcp checks connect and close without a handshake: not an error here.
        pass


server = Server(("127.0.0.1", int(port)), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
