// Pacing references for the benchmark (built at bench time):
//
//   pacing recv HOST PORT COUNT IDLE_MS
//     binds, prints "listening PORT", receives with recvmmsg and the
//     kernel's arrival time of each datagram (SO_TIMESTAMPNS), echoes each
//     one back, and stops after COUNT datagrams or IDLE_MS without one
//     (once the first came); prints one JSON line with the arrival times in
//     nanoseconds after the first.
//
//   pacing send HOST PORT COUNT INTERVAL_US SPIN_US
//     sends COUNT 64-byte datagrams, datagram n at start + n x INTERVAL_US:
//     clock_nanosleep(TIMER_ABSTIME) to SPIN_US before the deadline, then a
//     spin on CLOCK_MONOTONIC to it. The reference paced sender.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define VLEN 64
#define SLOT 65536
#define MAX_COUNT 1000000

static char bufs[VLEN][SLOT];
static char controls[VLEN][256];
static struct sockaddr_storage addrs[VLEN];
static struct iovec riov[VLEN], siov[VLEN];
static struct mmsghdr rmsg[VLEN], smsg[VLEN];
static int64_t arrivals[MAX_COUNT];

static socklen_t address(const char *host, int port,
                         struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (strchr(host, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) exit(2);
    return sizeof *a;
  }
  struct sockaddr_in *a = (struct sockaddr_in *)ss;
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  if (inet_pton(AF_INET, host, &a->sin_addr) != 1) exit(2);
  return sizeof *a;
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int receive(const char *host, int port, long count, int idle_ms) {
  struct sockaddr_storage ss;
  socklen_t sslen = address(host, port, &ss);
  int fd = socket(ss.ss_family, SOCK_DGRAM, 0);
  int on = 1;
  if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sslen) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) < 0) {
    perror("bind");
    return 1;
  }
  sslen = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &sslen);
  printf("listening %d\n",
         ntohs(ss.ss_family == AF_INET6
                   ? ((struct sockaddr_in6 *)&ss)->sin6_port
                   : ((struct sockaddr_in *)&ss)->sin_port));
  fflush(stdout);
  for (int i = 0; i < VLEN; i++) {
    riov[i].iov_base = bufs[i];
    riov[i].iov_len = SLOT;
    rmsg[i].msg_hdr.msg_iov = &riov[i];
    rmsg[i].msg_hdr.msg_iovlen = 1;
    rmsg[i].msg_hdr.msg_name = &addrs[i];
    siov[i].iov_base = bufs[i];
    smsg[i].msg_hdr.msg_iov = &siov[i];
    smsg[i].msg_hdr.msg_iovlen = 1;
    smsg[i].msg_hdr.msg_name = &addrs[i];
  }
  long n = 0;
  int64_t first = 0;
  while (n < count) {
    for (int i = 0; i < VLEN; i++) {
      rmsg[i].msg_hdr.msg_namelen = sizeof addrs[i];
      rmsg[i].msg_hdr.msg_control = controls[i];
      rmsg[i].msg_hdr.msg_controllen = sizeof controls[i];
    }
    int got = recvmmsg(fd, rmsg, VLEN, MSG_WAITFORONE, NULL);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break; /* idle */
      perror("recvmmsg");
      return 1;
    }
    for (int i = 0; i < got && n < count; i++) {
      int64_t t = -1;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(&rmsg[i].msg_hdr); c;
           c = CMSG_NXTHDR(&rmsg[i].msg_hdr, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
          struct timespec ts;
          memcpy(&ts, CMSG_DATA(c), sizeof ts);
          t = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
        }
      }
      if (t < 0) {
        fprintf(stderr, "pacing: a datagram came without its timestamp\n");
        return 1;
      }
      if (n == 0) {
        first = t;
        /* From the first datagram on, silence this long ends the run. */
        struct timeval tv = {idle_ms / 1000, (idle_ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      }
      arrivals[n++] = t - first;
      siov[i].iov_len = rmsg[i].msg_len;
      smsg[i].msg_hdr.msg_namelen = rmsg[i].msg_hdr.msg_namelen;
    }
    for (int sent = 0; sent < got;) {
      int r = sendmmsg(fd, smsg + sent, got - sent, 0);
      if (r < 0) sent++;
      else sent += r;
    }
  }
  printf("{\"count\":%ld,\"arrivals_ns\":[", n);
  for (long i = 0; i < n; i++) printf(i ? ",%lld" : "%lld", (long long)arrivals[i]);
  printf("]}\n");
  return 0;
}

static int send_paced(const char *host, int port, long count,
                      long interval_us, long spin_us) {
  struct sockaddr_storage ss;
  socklen_t sslen = address(host, port, &ss);
  int fd = socket(ss.ss_family, SOCK_DGRAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sslen) < 0) {
    perror("connect");
    return 1;
  }
  char payload[64] = {0};
  int64_t start = now_ns() + 10000000; /* 10 ms to settle */
  for (long n = 0; n < count; n++) {
    int64_t deadline = start + n * interval_us * 1000;
    int64_t wake = deadline - spin_us * 1000;
    struct timespec ts = {wake / 1000000000, wake % 1000000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
      ;
    while (now_ns() < deadline)
      ;
    memcpy(payload, &n, sizeof n);
    if (send(fd, payload, sizeof payload, 0) < 0 && errno != ECONNREFUSED) {
      perror("send");
      return 1;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 6 && strcmp(argv[1], "recv") == 0) {
    long count = atol(argv[4]);
    if (count < 1 || count > MAX_COUNT) return 2;
    return receive(argv[2], atoi(argv[3]), count, atoi(argv[5]));
  }
  if (argc == 7 && strcmp(argv[1], "send") == 0) {
    return send_paced(argv[2], atoi(argv[3]), atol(argv[4]), atol(argv[5]),
                      atol(argv[6]));
  }
  fprintf(stderr,
          "usage: pacing recv HOST PORT COUNT IDLE_MS\n"
          "       pacing send HOST PORT COUNT INTERVAL_US SPIN_US\n");
  return 2;
}
