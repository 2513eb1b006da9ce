"""A UDP echo server written the way the tutorials use Python's socket API.

Usage: python3 py_echo_server.py HOST PORT
Prints "listening PORT" once bound (PORT 0 picks a free one), then echoes.
"""
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
sock = socket.socket(family, socket.SOCK_DGRAM)
sock.bind((host, port))
print(f"listening {sock.getsockname()[1]}", flush=True)
while True:
    data, peer = sock.recvfrom(65536)
    sock.sendto(data, peer)
