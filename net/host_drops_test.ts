import { deepEqual, equal, match } from "node:assert/strict";
import {
  dropsInTable,
  NEEDS_ALLOW_ALL,
  procLocalAddress,
  readAllHostDrops,
} from "./host_drops.ts";

// Lines as Linux writes them, one socket each.
const UDP =
  `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            
  101: 0100007F:1B58 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4001 2 0000000000000000 0          
  102: 0101010A:1B58 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4002 2 0000000000000000 529        
  103: 00000000:1B59 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4003 2 0000000000000000 3          
  104: 00000000:1B59 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4004 2 0000000000000000 4          
`;
const UDP6 =
  `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  201: 00000000000000000000000001000000:1B58 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5001 2 0000000000000000 17
  202: 000000FD000000000000000001000000:1B58 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5002 2 0000000000000000 0
`;

Deno.test("procLocalAddress() writes an address and port as /proc/net/udp{,6} does", () => {
  equal(procLocalAddress("127.0.0.1", 7000), "0100007F:1B58");
  equal(procLocalAddress("0.0.0.0", 53), "00000000:0035");
  equal(
    procLocalAddress("::1", 7000),
    "00000000000000000000000001000000:1B58",
  );
  equal(
    procLocalAddress("fd00::1", 7000),
    "000000FD000000000000000001000000:1B58",
  );
  equal(procLocalAddress("localhost", 7000), undefined);
});

Deno.test("dropsInTable() finds the one socket's drops, and says why when it cannot", () => {
  deepEqual(dropsInTable(UDP, "10.1.1.1", 7000), { drops: 529 });
  deepEqual(dropsInTable(UDP, "127.0.0.1", 7000), { drops: 0 });
  deepEqual(dropsInTable(UDP6, "::1", 7000), { drops: 17 });
  deepEqual(dropsInTable(UDP6, "fd00::1", 7000), { drops: 0 });
  match(dropsInTable(UDP, "127.0.0.1", 7001).unknown!, /not in the kernel/);
  match(dropsInTable(UDP, "0.0.0.0", 7001).unknown!, /2 sockets share/);
});

Deno.test("readAllHostDrops() without --allow-all says what it needs, without a prompt", () => {
  const conn = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  try {
    const { port } = conn.addr as Deno.NetAddr;
    deepEqual(readAllHostDrops([{ hostname: "127.0.0.1", port }]), [{
      drops: null,
      unknown: Deno.build.os === "linux"
        ? NEEDS_ALLOW_ALL
        : "needs Linux's /proc/net/udp",
    }]);
  } finally {
    conn.close();
  }
});
