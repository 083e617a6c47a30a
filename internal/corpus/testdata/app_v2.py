"""Version 2 of the service, started while version 1 still serves.

It tries to bind 127.0.0.1:PORT every 100 ms until version 1 lets go, then
serves.
"""
import socket
import sys
import time

port = int(sys.argv[1])
print("started", flush=True)
while True:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        s.listen(64)
        break
    except OSError:
        s.close()
        time.sleep(0.1)
print("serving", flush=True)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b"HTTP/1.0 200 OK\r\n\r\nv2\n")
    c.close()
