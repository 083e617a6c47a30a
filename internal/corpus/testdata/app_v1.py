"""Version 1 of a small web service, as a rolling restart replaces it.

It serves on 127.0.0.1:PORT. On SIGTERM it drains for 0.6 s, still holding
its listening socket (in-flight requests finish), then exits.
"""
import os
import signal
import socket
import sys
import time

port = int(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)


def drain(signum, frame):
    print("draining", flush=True)
    time.sleep(0.6)
    os._exit(0)


signal.signal(signal.SIGTERM, drain)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b"HTTP/1.0 200 OK\r\n\r\nv1\n")
    c.close()
