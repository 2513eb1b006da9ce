// The C reference of bench/first_probe.ts (built at bench time):
//
//   first_probe HOST PORT COUNT INTERVAL_MS SIZE
//     sends COUNT datagrams of SIZE bytes to HOST:PORT (an IPv4 address),
//     datagram n at start + n x INTERVAL_MS (clock_nanosleep,
//     TIMER_ABSTIME), each after its reply or a 1 s timeout; T1 is
//     CLOCK_REALTIME read right before sendto and T4 the kernel's receive
//     time of the reply (SO_TIMESTAMPNS), as the engine client takes them.
//     No warm-up of any kind: probe 0 is the socket's first send. Prints
//     one JSON line, {"io":"c","rtt":[...]}, each RTT in ms (null without
//     a reply).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_COUNT 100000

static double ns_of(const struct timespec *t) {
  return (double)t->tv_sec * 1e9 + (double)t->tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: first_probe HOST PORT COUNT INTERVAL_MS SIZE\n");
    return 2;
  }
  struct sockaddr_in to = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)atoi(argv[2]))};
  if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
    fprintf(stderr, "error: Cannot parse %s: not an IPv4 address\n", argv[1]);
    return 2;
  }
  int count = atoi(argv[3]);
  long interval_ns = (long)(atof(argv[4]) * 1e6);
  int size = atoi(argv[5]);
  if (count < 1 || count > MAX_COUNT || size < 1 || size > 65507) {
    fprintf(stderr, "error: Cannot run: COUNT or SIZE out of range\n");
    return 2;
  }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  int on = 1;
  struct timeval timeout = {.tv_sec = 1};
  if (fd < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0) {
    perror("error: Cannot open the socket");
    return 1;
  }
  static char out[65536], in[65536];
  static double rtt_ms[MAX_COUNT];
  memset(out, 0x5a, sizeof out);
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (int n = 0; n < count; n++) {
    struct timespec due = start;
    long long at = (long long)start.tv_nsec + (long long)n * interval_ns;
    due.tv_sec += (time_t)(at / 1000000000LL);
    due.tv_nsec = (long)(at % 1000000000LL);
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL);
    memcpy(out, &n, sizeof n);
    struct timespec t1;
    clock_gettime(CLOCK_REALTIME, &t1);
    rtt_ms[n] = -1;
    if (sendto(fd, out, (size_t)size, 0, (struct sockaddr *)&to, sizeof to) !=
        size) {
      continue;
    }
    for (;;) {
      char control[256];
      struct iovec iov = {.iov_base = in, .iov_len = sizeof in};
      struct msghdr msg = {.msg_iov = &iov,
                           .msg_iovlen = 1,
                           .msg_control = control,
                           .msg_controllen = sizeof control};
      ssize_t got = recvmsg(fd, &msg, 0);
      if (got < 0) break;
      int seq;
      memcpy(&seq, in, sizeof seq);
      if (got != size || seq != n) continue;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL;
           c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
          struct timespec t4;
          memcpy(&t4, CMSG_DATA(c), sizeof t4);
          rtt_ms[n] = (ns_of(&t4) - ns_of(&t1)) / 1e6;
        }
      }
      break;
    }
  }
  printf("{\"io\":\"c\",\"rtt\":[");
  for (int n = 0; n < count; n++) {
    if (rtt_ms[n] < 0) printf("%snull", n ? "," : "");
    else printf("%s%.6f", n ? "," : "", rtt_ms[n]);
  }
  printf("]}\n");
  return 0;
}
