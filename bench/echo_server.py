"""Python reference for the benchmark: the tutorial's echo loop without its prints.

Usage: python3 echo_server.py HOST PORT
Prints `starting up on HOST port PORT` (the port actually bound) and echoes
until killed. Like the tutorial, it receives into 4,096 bytes and does not
answer a zero-length datagram.
"""

import socket
import sys


def main():
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, port))
    print("starting up on {} port {}".format(host, sock.getsockname()[1]), flush=True)
    while True:
        data, address = sock.recvfrom(4096)
        if data:
            sock.sendto(data, address)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
