// Node reference for the benchmark: the plain node:dgram echo.
//
// Usage: node echo_server_node.mjs HOST PORT
// Prints `starting up on HOST port PORT` (the port actually bound) and echoes
// every datagram until killed.
import dgram from "node:dgram";

const host = process.argv[2] ?? "127.0.0.1";
const port = Number(process.argv[3] ?? 0);
const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
socket.on("message", (message, remote) => {
  socket.send(message, remote.port, remote.address);
});
socket.bind(port, host, () => {
  console.log(`starting up on ${host} port ${socket.address().port}`);
});
