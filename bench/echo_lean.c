// A second C reference echo server, as lean as C allows for small
// datagrams (built at bench time): recvmmsg/sendmmsg, batches of up to 64,
// replies in place, but with small receive slots (SLOT bytes, default
// 2048, so a batch's buffers share a few pages instead of 64 KiB each) and,
// with "busy", a nonblocking receive that spins instead of sleeping in the
// kernel (it burns its core whether or not datagrams come); with "pktinfo"
// it blocks, and does the per-datagram control-message work the kernel
// engine does on a wildcard socket (IPv4): it asks for each datagram's
// IP_PKTINFO and names the address each reply leaves from. A datagram
// longer than SLOT is skipped, not echoed.
// Usage: echo_lean HOST PORT [block|busy|pktinfo [SLOT]]
// (prints "listening PORT")
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define VLEN 64

static struct sockaddr_storage addrs[VLEN];
static struct iovec riov[VLEN], siov[VLEN];
static struct mmsghdr rmsg[VLEN], smsg[VLEN];
static char rctl[VLEN][64], sctl[VLEN][64];

int main(int argc, char **argv) {
  if (argc < 3 || argc > 5) {
    fprintf(stderr,
            "usage: echo_lean HOST PORT [block|busy|pktinfo [SLOT]]\n");
    return 2;
  }
  int busy = argc >= 4 && strcmp(argv[3], "busy") == 0;
  int pktinfo = argc >= 4 && strcmp(argv[3], "pktinfo") == 0;
  int slot = argc == 5 ? atoi(argv[4]) : 2048;
  if (slot < 1 || slot > 65536) return 2;
  char *bufs = aligned_alloc(4096, (size_t)VLEN * slot);
  if (!bufs) return 1;
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
  int on = 1;
  if (pktinfo && family == AF_INET &&
      setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on) < 0) {
    perror("IP_PKTINFO");
    return 1;
  }
  pktinfo = pktinfo && family == AF_INET;
  sslen = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &sslen);
  printf("listening %d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
  fflush(stdout);
  for (int i = 0; i < VLEN; i++) {
    riov[i].iov_base = bufs + (size_t)i * slot;
    riov[i].iov_len = slot;
    rmsg[i].msg_hdr.msg_iov = &riov[i];
    rmsg[i].msg_hdr.msg_iovlen = 1;
    rmsg[i].msg_hdr.msg_name = &addrs[i];
    smsg[i].msg_hdr.msg_iov = &siov[i];
    smsg[i].msg_hdr.msg_iovlen = 1;
  }
  int flags = busy ? MSG_DONTWAIT : MSG_WAITFORONE;
  for (;;) {
    for (int i = 0; i < VLEN; i++) {
      rmsg[i].msg_hdr.msg_namelen = sizeof addrs[i];
      if (pktinfo) {
        rmsg[i].msg_hdr.msg_control = rctl[i];
        rmsg[i].msg_hdr.msg_controllen = sizeof rctl[i];
      }
    }
    int n = recvmmsg(fd, rmsg, VLEN, flags, NULL);
    if (n <= 0) continue;
    int kept = 0;
    for (int i = 0; i < n; i++) {
      if (rmsg[i].msg_hdr.msg_flags & MSG_TRUNC) continue;
      siov[kept].iov_base = riov[i].iov_base;
      siov[kept].iov_len = rmsg[i].msg_len;
      smsg[kept].msg_hdr.msg_name = &addrs[i];
      smsg[kept].msg_hdr.msg_namelen = rmsg[i].msg_hdr.msg_namelen;
      smsg[kept].msg_hdr.msg_controllen = 0;
      struct cmsghdr *c = pktinfo ? CMSG_FIRSTHDR(&rmsg[i].msg_hdr) : NULL;
      for (; c; c = CMSG_NXTHDR(&rmsg[i].msg_hdr, c)) {
        if (c->cmsg_level != IPPROTO_IP || c->cmsg_type != IP_PKTINFO) continue;
        struct in_pktinfo in;
        memcpy(&in, CMSG_DATA(c), sizeof in);
        struct cmsghdr *out = (struct cmsghdr *)sctl[kept];
        out->cmsg_len = CMSG_LEN(sizeof in);
        out->cmsg_level = IPPROTO_IP;
        out->cmsg_type = IP_PKTINFO;
        in.ipi_ifindex = 0;
        memcpy(CMSG_DATA(out), &in, sizeof in);
        smsg[kept].msg_hdr.msg_control = sctl[kept];
        smsg[kept].msg_hdr.msg_controllen = CMSG_SPACE(sizeof in);
        break;
      }
      kept++;
    }
    int sent = 0;
    while (sent < kept) {
      int r = sendmmsg(fd, smsg + sent, kept - sent, 0);
      if (r < 0) {
        if (errno == EINTR) continue;
        sent++;
      } else sent += r;
    }
  }
}
