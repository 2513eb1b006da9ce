// A reference UDP echo server for benchmarks: recvmmsg/sendmmsg in a loop,
// batches of up to 64 datagrams, replies in place. Built at bench time.
// Usage: echo_mmsg HOST PORT   (prints "listening PORT" once bound)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define VLEN 64
#define SLOT 65536

static char bufs[VLEN][SLOT];
static struct sockaddr_storage addrs[VLEN];
static struct iovec riov[VLEN], siov[VLEN];
static struct mmsghdr rmsg[VLEN], smsg[VLEN];

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: echo_mmsg HOST PORT\n");
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
    if (inet_pton(AF_INET6, argv[1], &a->sin6_addr) != 1) return 2;
    sslen = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &a->sin_addr) != 1) return 2;
    sslen = sizeof *a;
  }
  int fd = socket(family, SOCK_DGRAM, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sslen) < 0) {
    perror("bind");
    return 1;
  }
  sslen = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &sslen);
  printf("listening %d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
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
  for (;;) {
    for (int i = 0; i < VLEN; i++) rmsg[i].msg_hdr.msg_namelen = sizeof addrs[i];
    int n = recvmmsg(fd, rmsg, VLEN, MSG_WAITFORONE, NULL);
    if (n <= 0) continue;
    for (int i = 0; i < n; i++) {
      siov[i].iov_len = rmsg[i].msg_len;
      smsg[i].msg_hdr.msg_namelen = rmsg[i].msg_hdr.msg_namelen;
    }
    int sent = 0;
    while (sent < n) {
      int r = sendmmsg(fd, smsg + sent, n - sent, 0);
      if (r < 0) sent++;
      else sent += r;
    }
  }
}
