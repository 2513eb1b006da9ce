"""A UDP echo client written the way the tutorials use Python's socket API.

Usage: python3 py_echo_client.py HOST PORT MESSAGE
Prints the echoed message and exits 0, or exits 1 after two seconds of silence.
"""
import socket
import sys

host, port, message = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
family = socket.AF_INET6 if ":" in host else socket.AF_INET
sock = socket.socket(family, socket.SOCK_DGRAM)
sock.settimeout(2.0)
try:
    sock.sendto(message, (host, port))
    data, server = sock.recvfrom(65536)
    print(data.decode())
except socket.timeout:
    sys.exit(1)
finally:
    sock.close()
