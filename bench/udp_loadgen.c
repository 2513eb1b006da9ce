// A closed-loop UDP load generator for benchmarks (built at bench time):
// keeps WINDOW datagrams of SIZE bytes in flight against an echo server for
// SECONDS after a short warm-up, checks every reply's content, and prints one
// JSON line: echoes/s, round-trip percentiles and the shortest round trip,
// lost, corrupted. The warm-up is WARMUP seconds (default 0.5).
// STAMPS "user" (the default) times a round trip from CLOCK_MONOTONIC as the
// datagram is written to CLOCK_MONOTONIC after recvmmsg returns; "kernel"
// from CLOCK_REALTIME as it is written to the kernel's arrival time
// (SO_TIMESTAMPNS), the way client.ts's kernel engine times its probes.
// Usage: udp_loadgen HOST PORT WINDOW SIZE SECONDS [WARMUP [STAMPS]]
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
#define HEADER 16
#define BUCKET_NS 100
#define BUCKETS 1000000 /* 100 ns buckets up to 100 ms */
#define RING 65536

static uint32_t hist[BUCKETS];
static uint8_t outstanding[RING];
static char rbufs[VLEN][SLOT];
static char sbufs[VLEN][SLOT];
static struct iovec riov[VLEN], siov[VLEN];
static struct mmsghdr rmsg[VLEN], smsg[VLEN];
static char controls[VLEN][64];
static int kernel_stamps;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static uint64_t real_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static uint32_t session;
static uint32_t next_seq;
static int size;

static void fill(char *p, uint32_t seq) {
  uint64_t t = kernel_stamps ? real_ns() : now_ns();
  memcpy(p, &session, 4);
  memcpy(p + 4, &seq, 4);
  memcpy(p + 8, &t, 8);
  for (int i = HEADER; i < size; i++) p[i] = (char)(seq * 31u + i);
  outstanding[seq % RING] = 1;
}

static int check(const char *p, int len, uint32_t *seq, uint64_t *sent_ns) {
  uint32_t s;
  if (len != size) return 0;
  memcpy(&s, p, 4);
  if (s != session) return 0;
  memcpy(seq, p + 4, 4);
  memcpy(sent_ns, p + 8, 8);
  for (int i = HEADER; i < size; i++)
    if (p[i] != (char)(*seq * 31u + i)) return 0;
  return 1;
}

/* The kernel's arrival time of a received datagram (SCM_TIMESTAMPNS). */
static uint64_t arrival_ns(struct msghdr *h) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
      struct timespec ts;
      memcpy(&ts, CMSG_DATA(c), sizeof ts);
      return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
    }
  }
  return real_ns();
}

static double percentile(uint64_t total, double q) {
  uint64_t want = (uint64_t)(total * q), seen = 0;
  for (int i = 0; i < BUCKETS; i++) {
    seen += hist[i];
    if (seen > want) return (i + 0.5) * BUCKET_NS / 1000.0;
  }
  return BUCKETS * BUCKET_NS / 1000.0;
}

int main(int argc, char **argv) {
  if (argc < 6 || argc > 8) {
    fprintf(stderr,
            "usage: udp_loadgen HOST PORT WINDOW SIZE SECONDS [WARMUP [user|kernel]]\n");
    return 2;
  }
  int window = atoi(argv[3]);
  size = atoi(argv[4]);
  double seconds = atof(argv[5]);
  double warmup = argc >= 7 ? atof(argv[6]) : 0.5;
  kernel_stamps = argc == 8 && strcmp(argv[7], "kernel") == 0;
  if (window < 1 || window > VLEN || size < HEADER || size > 65507) {
    fprintf(stderr, "udp_loadgen: WINDOW 1..64, SIZE 16..65507\n");
    return 2;
  }
  struct sockaddr_storage ss;
  socklen_t sslen;
  memset(&ss, 0, sizeof ss);
  int family = strchr(argv[1], ':') ? AF_INET6 : AF_INET;
  if (family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(atoi(argv[2]));
    inet_pton(AF_INET6, argv[1], &a->sin6_addr);
    sslen = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &a->sin_addr);
    sslen = sizeof *a;
  }
  int fd = socket(family, SOCK_DGRAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sslen) < 0) {
    perror("connect");
    return 1;
  }
  struct timeval tv = {0, 200000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int on = 1;
  if (kernel_stamps &&
      setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) < 0) {
    perror("SO_TIMESTAMPNS");
    return 1;
  }
  session = (uint32_t)(now_ns() ^ getpid());
  for (int i = 0; i < VLEN; i++) {
    riov[i].iov_base = rbufs[i];
    riov[i].iov_len = SLOT;
    rmsg[i].msg_hdr.msg_iov = &riov[i];
    rmsg[i].msg_hdr.msg_iovlen = 1;
    siov[i].iov_base = sbufs[i];
    siov[i].iov_len = size;
    smsg[i].msg_hdr.msg_iov = &siov[i];
    smsg[i].msg_hdr.msg_iovlen = 1;
  }
  uint64_t echoes = 0, lost = 0, corrupt = 0, late = 0, samples = 0;
  uint64_t min_ns = UINT64_MAX;
  uint64_t start = now_ns();
  uint64_t measure_from = start + (uint64_t)(warmup * 1e9);
  uint64_t end = measure_from + (uint64_t)(seconds * 1e9);
  int measuring = 0;
  for (int i = 0; i < window; i++) fill(sbufs[i], next_seq++);
  if (sendmmsg(fd, smsg, window, 0) != window) {
    perror("sendmmsg");
    return 1;
  }
  for (;;) {
    uint64_t t = now_ns();
    if (!measuring && t >= measure_from) {
      measuring = 1;
      echoes = lost = corrupt = late = samples = 0;
      min_ns = UINT64_MAX;
      memset(hist, 0, sizeof hist);
      measure_from = t;
    }
    if (t >= end) break;
    for (int i = 0; kernel_stamps && i < VLEN; i++) {
      rmsg[i].msg_hdr.msg_control = controls[i];
      rmsg[i].msg_hdr.msg_controllen = sizeof controls[i];
    }
    int n = recvmmsg(fd, rmsg, VLEN, MSG_WAITFORONE, NULL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        /* Count what is still out as lost and refill the window. */
        for (int i = 0; i < RING; i++)
          if (outstanding[i]) {
            outstanding[i] = 0;
            lost++;
          }
        for (int i = 0; i < window; i++) fill(sbufs[i], next_seq++);
        sendmmsg(fd, smsg, window, 0);
              continue;
      }
      if (errno == EINTR) continue;
      perror("recvmmsg");
      return 1;
    }
    uint64_t now = now_ns();
    int refill = 0;
    for (int i = 0; i < n; i++) {
      uint32_t seq;
      uint64_t sent_ns;
      if (!check(rbufs[i], rmsg[i].msg_len, &seq, &sent_ns)) {
        corrupt++;
        continue;
      }
      if (!outstanding[seq % RING]) {
        late++;
        continue;
      }
      outstanding[seq % RING] = 0;
      echoes++;
      if (kernel_stamps) now = arrival_ns(&rmsg[i].msg_hdr);
      if (now - sent_ns < min_ns) min_ns = now - sent_ns;
      uint64_t b = (now - sent_ns) / BUCKET_NS;
      hist[b < BUCKETS ? b : BUCKETS - 1]++;
      samples++;
      fill(sbufs[refill++], next_seq++);
    }
    if (refill > 0) {
      int sent = 0;
      while (sent < refill) {
        int r = sendmmsg(fd, smsg + sent, refill - sent, 0);
        if (r < 0) {
          if (errno == EINTR) continue;
          perror("sendmmsg");
          return 1;
        }
        sent += r;
      }
    }
  }
  double elapsed = (now_ns() - measure_from) / 1e9;
  printf("{\"window\":%d,\"size\":%d,\"seconds\":%.3f,\"echoes\":%llu,"
         "\"echoes_per_s\":%.0f,\"p50_us\":%.2f,\"p99_us\":%.2f,\"min_us\":%.3f,"
         "\"lost\":%llu,\"corrupted\":%llu,\"late\":%llu}\n",
         window, size, elapsed, (unsigned long long)echoes, echoes / elapsed,
         percentile(samples, 0.5), percentile(samples, 0.99),
         samples ? min_ns / 1000.0 : 0.0,
         (unsigned long long)lost, (unsigned long long)corrupt,
         (unsigned long long)late);
  return 0;
}
