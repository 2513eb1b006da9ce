/*
 * An independent STAMP peer for the interop tests, written in C from the
 * packet diagrams of RFC 8762 (sections 4.2.1 and 4.3.1, unauthenticated
 * mode) and RFC 8972 (section 3, the SSID; section 4, TLVs) and the socket
 * API. It shares no code and no constants with udp-echo.
 *
 *   stamp_peer reflector HOST [ptp] [stateful] [plain]
 *     Binds HOST port 0, prints the port on a line, reflects until killed.
 *     T2 is the kernel receive time (SO_TIMESTAMPNS), the TTL or hop limit
 *     comes from IP_RECVTTL / IPV6_RECVHOPLIMIT. "plain" is an RFC 8762-only
 *     reflector: bytes 14-15 are MBZ (no SSID) and TLVs come back untouched.
 *     Otherwise every TLV but Extra Padding comes back with U set, and one
 *     whose length runs past the packet with M set (it understands no other).
 *
 *   stamp_peer sender HOST PORT COUNT SIZE SSID
 *     Sends COUNT test packets of SIZE bytes (a Location TLV asking for the
 *     source and destination addresses and a Timestamp Information TLV when
 *     they fit, Extra Padding over the rest), checks every reply and prints
 *     one JSON object per reply. Exit 0 when every reply arrived.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BASE 44
#define NTP_EPOCH_OFFSET 2208988800UL

static void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xff; }
static void put32(uint8_t *p, uint32_t v) {
  p[0] = v >> 24; p[1] = (v >> 16) & 0xff; p[2] = (v >> 8) & 0xff; p[3] = v & 0xff;
}
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Timestamps: NTP 64-bit (RFC 5905) or PTPv2 truncated (RFC 8186, Z = 1). */
static void put_time(uint8_t *p, const struct timespec *t, int ptp) {
  if (ptp) {
    put32(p, (uint32_t)t->tv_sec);
    put32(p + 4, (uint32_t)t->tv_nsec);
  } else {
    put32(p, (uint32_t)(t->tv_sec + NTP_EPOCH_OFFSET));
    put32(p + 4, (uint32_t)(((uint64_t)t->tv_nsec << 32) / 1000000000ULL));
  }
}
static double get_time(const uint8_t *p, int ptp) {
  if (ptp) return get32(p) + get32(p + 4) / 1e9;
  return (double)get32(p) - NTP_EPOCH_OFFSET + get32(p + 4) / 4294967296.0;
}

static int open_socket(const char *host, const char *port, struct sockaddr_storage *to,
                       socklen_t *to_len) {
  struct addrinfo hints = {0}, *res;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICHOST;
  if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
  int fd = socket(res->ai_family, SOCK_DGRAM, 0);
  memcpy(to, res->ai_addr, res->ai_addrlen);
  *to_len = res->ai_addrlen;
  freeaddrinfo(res);
  return fd;
}

/* ---------------------------------------------------------------- reflector */

struct session { struct sockaddr_storage from; uint16_t ssid; uint32_t next; };
static struct session sessions[64];
static int session_count;

static uint32_t next_seq(const struct sockaddr_storage *from, socklen_t len, uint16_t ssid) {
  for (int i = 0; i < session_count; i++) {
    if (sessions[i].ssid == ssid && memcmp(&sessions[i].from, from, len) == 0) {
      return sessions[i].next++;
    }
  }
  if (session_count == 64) session_count = 0;
  struct session *s = &sessions[session_count++];
  memset(s, 0, sizeof *s);
  memcpy(&s->from, from, len);
  s->ssid = ssid;
  return s->next++;
}

static int reflector(const char *host, int ptp, int stateful, int plain) {
  struct sockaddr_storage local;
  socklen_t local_len;
  int fd = open_socket(host, "0", &local, &local_len);
  if (fd < 0 || bind(fd, (struct sockaddr *)&local, local_len) != 0) {
    perror("bind");
    return 1;
  }
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
  if (local.ss_family == AF_INET6) {
    setsockopt(fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &on, sizeof on);
  } else {
    setsockopt(fd, IPPROTO_IP, IP_RECVTTL, &on, sizeof on);
  }
  getsockname(fd, (struct sockaddr *)&local, &local_len);
  uint16_t port = ntohs(local.ss_family == AF_INET6
                            ? ((struct sockaddr_in6 *)&local)->sin6_port
                            : ((struct sockaddr_in *)&local)->sin_port);
  printf("%u\n", port);
  fflush(stdout);

  static uint8_t in[65536], out[65536];
  for (;;) {
    struct sockaddr_storage from;
    char control[256];
    struct iovec iov = {in, sizeof in};
    struct msghdr msg = {0};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(fd, &msg, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("recvmsg");
      return 1;
    }
    struct timespec t2;
    clock_gettime(CLOCK_REALTIME, &t2);
    int ttl = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
        memcpy(&t2, CMSG_DATA(c), sizeof t2);
      } else if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL) ||
                 (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT)) {
        memcpy(&ttl, CMSG_DATA(c), sizeof ttl);
      }
    }
    if (n < BASE) continue; /* not a STAMP test packet */
    memcpy(out, in, (size_t)n);
    uint16_t ssid = plain ? 0 : get16(in + 14);
    uint32_t seq = stateful ? next_seq(&from, msg.msg_namelen, ssid) : get32(in);
    /* RFC 8762 section 4.3.1, unauthenticated. */
    put32(out, seq);
    /* S = 0, Z per format, Scale 14, Multiplier 1: about 4 microseconds. */
    put16(out + 12, (uint16_t)((ptp ? 0x4000 : 0) | 14 << 8 | 1));
    put16(out + 14, ssid);
    put_time(out + 16, &t2, ptp);
    memcpy(out + 24, in, 4);      /* Session-Sender Sequence Number */
    memcpy(out + 28, in + 4, 8);  /* Session-Sender Timestamp */
    memcpy(out + 36, in + 12, 2); /* Session-Sender Error Estimate */
    put16(out + 38, 0);
    out[40] = (uint8_t)ttl;
    out[41] = out[42] = out[43] = 0;
    if (!plain) {
      /* RFC 8972 section 4: Flags|Type|Length(16), Length counts the value. */
      for (size_t at = BASE; at < (size_t)n;) {
        if (at + 4 > (size_t)n) { out[at] = 0x40; break; }
        size_t length = get16(out + at + 2);
        if (at + 4 + length > (size_t)n) { out[at] = 0x40; break; }
        out[at] = out[at + 1] == 1 ? 0 : 0x80;
        at += 4 + length;
      }
    }
    struct timespec t3;
    clock_gettime(CLOCK_REALTIME, &t3);
    put_time(out + 4, &t3, ptp);
    sendto(fd, out, (size_t)n, 0, (struct sockaddr *)&from, msg.msg_namelen);
  }
}

/* ------------------------------------------------------------------- sender */

static void print_hex(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
}

static int sender(const char *host, const char *port, int count, int size, int ssid) {
  struct sockaddr_storage to;
  socklen_t to_len;
  int fd = open_socket(host, port, &to, &to_len);
  if (fd < 0 || size < BASE || size > 65507) {
    fprintf(stderr, "stamp_peer: bad arguments\n");
    return 2;
  }
  static uint8_t packet[65536], reply[65536];
  int failures = 0;
  for (int seq = 0; seq < count; seq++) {
    memset(packet, 0, sizeof packet);
    struct timespec t1;
    clock_gettime(CLOCK_REALTIME, &t1);
    /* RFC 8762 section 4.2.1 with the SSID of RFC 8972 section 3. */
    put32(packet, (uint32_t)seq);
    put_time(packet + 4, &t1, 0);
    put16(packet + 12, 0x0e01); /* S = 0, Z = 0 (NTP), Scale 14, Multiplier 1 */
    put16(packet + 14, (uint16_t)ssid);
    size_t at = BASE;
    if ((size_t)size >= at + 48 + 8 + 4) {
      /* Location TLV: ports, then Source IP (7) and Destination IP (4) sub-TLVs. */
      packet[at] = 0x80; packet[at + 1] = 2; put16(packet + at + 2, 44);
      packet[at + 8] = 0x80; packet[at + 9] = 7; put16(packet + at + 10, 16);
      packet[at + 28] = 0x80; packet[at + 29] = 4; put16(packet + at + 30, 16);
      at += 48;
      /* Timestamp Information TLV: four one-octet fields. */
      packet[at] = 0x80; packet[at + 1] = 3; put16(packet + at + 2, 4);
      at += 8;
    }
    if ((size_t)size >= at + 4) {
      packet[at] = 0x80; packet[at + 1] = 1; put16(packet + at + 2, (uint16_t)(size - at - 4));
    }
    sendto(fd, packet, (size_t)size, 0, (struct sockaddr *)&to, to_len);
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 2000) != 1) {
      printf("{\"seq\":%d,\"lost\":true}\n", seq);
      failures++;
      continue;
    }
    ssize_t n = recv(fd, reply, sizeof reply, 0);
    struct timespec t4;
    clock_gettime(CLOCK_REALTIME, &t4);
    if (n < BASE) {
      printf("{\"seq\":%d,\"length\":%zd,\"problems\":[\"short\"]}\n", seq, n);
      failures++;
      continue;
    }
    uint16_t error = get16(reply + 12);
    int z = (error >> 14) & 1;
    double t2 = get_time(reply + 16, z), t3 = get_time(reply + 4, z);
    double t1s = get_time(packet + 4, 0);
    double t4s = t4.tv_sec + t4.tv_nsec / 1e9;
    printf("{\"seq\":%d,\"length\":%zd,\"reflector_seq\":%u,\"ssid\":%u,"
           "\"s\":%d,\"z\":%d,\"scale\":%d,\"multiplier\":%d,"
           "\"sender_seq\":%u,\"sender_timestamp_echoed\":%s,\"sender_error_echoed\":%s,"
           "\"ttl\":%d,\"mbz_zero\":%s,\"t1\":%.9f,\"t2\":%.9f,\"t3\":%.9f,\"t4\":%.9f,\"tlvs\":[",
           seq, n, get32(reply), get16(reply + 14), error >> 15, z, (error >> 8) & 0x3f,
           error & 0xff, get32(reply + 24),
           memcmp(reply + 28, packet + 4, 8) == 0 ? "true" : "false",
           memcmp(reply + 36, packet + 12, 2) == 0 ? "true" : "false", reply[40],
           (get16(reply + 38) == 0 && reply[41] == 0 && reply[42] == 0 && reply[43] == 0)
               ? "true" : "false",
           t1s, t2, t3, t4s);
    for (size_t i = BASE; i + 4 <= (size_t)n;) {
      size_t length = get16(reply + i + 2);
      if (i + 4 + length > (size_t)n) length = (size_t)n - i - 4;
      printf("%s{\"flags\":%d,\"type\":%d,\"length\":%zu,\"value\":\"", i == BASE ? "" : ",",
             reply[i], reply[i + 1], length);
      print_hex(reply + i + 4, length);
      printf("\"}");
      i += 4 + length;
    }
    printf("]}\n");
    fflush(stdout);
    if (n != size) failures++;
  }
  close(fd);
  return failures == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 3 && strcmp(argv[1], "reflector") == 0) {
    int ptp = 0, stateful = 0, plain = 0;
    for (int i = 3; i < argc; i++) {
      if (strcmp(argv[i], "ptp") == 0) ptp = 1;
      if (strcmp(argv[i], "stateful") == 0) stateful = 1;
      if (strcmp(argv[i], "plain") == 0) plain = 1;
    }
    return reflector(argv[2], ptp, stateful, plain);
  }
  if (argc == 7 && strcmp(argv[1], "sender") == 0) {
    return sender(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
  }
  fprintf(stderr, "usage: stamp_peer reflector HOST [ptp] [stateful] [plain]\n"
                  "       stamp_peer sender HOST PORT COUNT SIZE SSID\n");
  return 2;
}
