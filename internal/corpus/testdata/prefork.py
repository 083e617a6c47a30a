"""A prefork server: the parent listens on 127.0.0.1:PORT, forks two
workers (fork without exec) that inherit the listening socket and accept on
it, says "ready WORKER WORKER" and waits for them.
"""
import os
import socket
import sys

port = int(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
workers = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        while True:
            c, _ = s.accept()
            c.recv(4096)
            c.sendall(b"HTTP/1.0 200 OK\r\n\r\nok\n")
            c.close()
    workers.append(pid)
print("ready", *workers, flush=True)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
