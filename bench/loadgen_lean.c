// A second C closed-loop load generator, as lean as C allows (built at
// bench time): like udp_loadgen.c it keeps WINDOW datagrams of SIZE bytes in
// flight for SECONDS after a warm-up, checks every reply and prints the same
// JSON line, but it reads the clock once per batch instead of once per
// datagram (a batch's datagrams share the stamp taken right before their
// sendmmsg, and the time taken right after the recvmmsg that returned
// them), compares payloads with memcmp against one template instead of
// building and checking a pattern byte by byte, receives into small slots,
// and with "busy" polls without blocking instead of sleeping in the kernel.
// Usage: loadgen_lean HOST PORT WINDOW SIZE SECONDS [WARMUP [block|busy]]
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
#define HEADER 16
#define BUCKET_NS 100
#define BUCKETS 1000000 /* 100 ns buckets up to 100 ms */
#define RING 65536
#define TIMEOUT_NS 200000000ull

static uint32_t hist[BUCKETS];
static uint8_t outstanding[RING];
static char template[65536];
static char *rbufs, *sbufs;
static struct iovec riov[VLEN], siov[VLEN];
static struct mmsghdr rmsg[VLEN], smsg[VLEN];
static uint32_t session, next_seq;
static int size, slot;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

/* Writes the headers of send slots 0..k-1 with one stamp, sends them all. */
static int send_batch(int fd, int k) {
  for (int i = 0; i < k; i++) {
    char *p = sbufs + (size_t)i * size;
    uint32_t seq = next_seq++;
    memcpy(p + 4, &seq, 4);
    outstanding[seq % RING] = 1;
  }
  uint64_t t = now_ns();
  for (int i = 0; i < k; i++) memcpy(sbufs + (size_t)i * size + 8, &t, 8);
  int sent = 0;
  while (sent < k) {
    int r = sendmmsg(fd, smsg + sent, k - sent, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      perror("sendmmsg");
      exit(1);
    }
    sent += r;
  }
  return sent;
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
    fprintf(stderr, "usage: loadgen_lean HOST PORT WINDOW SIZE SECONDS "
                    "[WARMUP [block|busy]]\n");
    return 2;
  }
  int window = atoi(argv[3]);
  size = atoi(argv[4]);
  double seconds = atof(argv[5]);
  double warmup = argc >= 7 ? atof(argv[6]) : 0.5;
  int busy = argc == 8 && strcmp(argv[7], "busy") == 0;
  if (window < 1 || window > VLEN || size < HEADER || size > 65507) {
    fprintf(stderr, "loadgen_lean: WINDOW 1..64, SIZE 16..65507\n");
    return 2;
  }
  /* One byte more than sent: a longer reply still shows as longer. */
  slot = (size + 1 + 63) & ~63;
  rbufs = aligned_alloc(4096, (size_t)VLEN * slot + 4096);
  sbufs = aligned_alloc(4096, (size_t)VLEN * size + 4096);
  if (!rbufs || !sbufs) return 1;
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
  session = (uint32_t)(now_ns() ^ getpid());
  for (int i = HEADER; i < size; i++) template[i] = (char)(i * 31u);
  memcpy(template, &session, 4);
  for (int i = 0; i < VLEN; i++) {
    memcpy(sbufs + (size_t)i * size, template, size);
    riov[i].iov_base = rbufs + (size_t)i * slot;
    riov[i].iov_len = slot;
    rmsg[i].msg_hdr.msg_iov = &riov[i];
    rmsg[i].msg_hdr.msg_iovlen = 1;
    siov[i].iov_base = sbufs + (size_t)i * size;
    siov[i].iov_len = size;
    smsg[i].msg_hdr.msg_iov = &siov[i];
    smsg[i].msg_hdr.msg_iovlen = 1;
  }
  uint64_t echoes = 0, lost = 0, corrupt = 0, late = 0, samples = 0;
  uint64_t min_ns = UINT64_MAX;
  uint64_t start = now_ns();
  uint64_t measure_from = start + (uint64_t)(warmup * 1e9);
  uint64_t end = measure_from + (uint64_t)(seconds * 1e9);
  uint64_t last_reply = start;
  int measuring = 0;
  send_batch(fd, window);
  int flags = busy ? MSG_DONTWAIT : MSG_WAITFORONE;
  for (;;) {
    int n = recvmmsg(fd, rmsg, VLEN, flags, NULL);
    uint64_t now = now_ns();
    if (!measuring && now >= measure_from) {
      measuring = 1;
      echoes = lost = corrupt = late = samples = 0;
      min_ns = UINT64_MAX;
      memset(hist, 0, sizeof hist);
      measure_from = now;
    }
    if (now >= end) break;
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        perror("recvmmsg");
        return 1;
      }
      if (now - last_reply >= TIMEOUT_NS) {
        /* Count what is still out as lost and refill the window. */
        for (int i = 0; i < RING; i++)
          if (outstanding[i]) {
            outstanding[i] = 0;
            lost++;
          }
        last_reply = now;
        send_batch(fd, window);
      }
      continue;
    }
    last_reply = now;
    int refill = 0;
    for (int i = 0; i < n; i++) {
      const char *p = riov[i].iov_base;
      uint32_t seq;
      uint64_t sent_ns;
      if ((int)rmsg[i].msg_len != size || memcmp(p, template, 4) != 0 ||
          memcmp(p + HEADER, template + HEADER, size - HEADER) != 0) {
        corrupt++;
        continue;
      }
      memcpy(&seq, p + 4, 4);
      if (!outstanding[seq % RING]) {
        late++;
        continue;
      }
      outstanding[seq % RING] = 0;
      memcpy(&sent_ns, p + 8, 8);
      echoes++;
      uint64_t rtt = now - sent_ns;
      if (rtt < min_ns) min_ns = rtt;
      uint64_t b = rtt / BUCKET_NS;
      hist[b < BUCKETS ? b : BUCKETS - 1]++;
      samples++;
      refill++;
    }
    if (refill > 0) send_batch(fd, refill);
  }
  double elapsed = (now_ns() - measure_from) / 1e9;
  printf("{\"window\":%d,\"size\":%d,\"seconds\":%.3f,\"echoes\":%llu,"
         "\"echoes_per_s\":%.0f,\"p50_us\":%.2f,\"p99_us\":%.2f,\"min_us\":%.3f,"
         "\"lost\":%llu,\"corrupted\":%llu,\"late\":%llu}\n",
         window, size, elapsed, (unsigned long long)echoes, echoes / elapsed,
         percentile(samples, 0.5), percentile(samples, 0.99),
         samples ? min_ns / 1000.0 : 0.0, (unsigned long long)lost,
         (unsigned long long)corrupt, (unsigned long long)late);
  return 0;
}
