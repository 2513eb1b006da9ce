/**
 * The C structures the kernel engine lays out in its buffers, once for both
 * halves (the echo engine and the sender engine), as LP64 Linux (x86_64,
 * aarch64) defines them: `struct mmsghdr` (a `struct msghdr` and the length
 * the kernel received or sent), `struct iovec`, `struct cmsghdr`, `struct
 * timespec` and `struct pollfd`. Sizes and offsets are in bytes; a 4-byte
 * field at offset `o` is word `o >> 2` of a `Uint32Array` over the buffer,
 * and pointers and `size_t` fields are written with {@linkcode write64}.
 * Socket addresses are `_sockaddr.ts`'s, control messages `_pktinfo.ts`'s.
 *
 * The per-datagram loops index words with literals (`u32[h + 14]` is
 * `msg_len`, {@linkcode MSG_LEN} `>> 2`) and name the field in a comment: a
 * literal offset folds into the load, where a named one is one more load
 * per field per datagram.
 *
 * @module
 */

/** `struct mmsghdr`: a `struct msghdr`, then `msg_len`, padded. */
export const MMSGHDR_SIZE = 64;
/** `msg_name`: a pointer to the peer's `struct sockaddr`. */
export const MSG_NAME = 0;
/** `msg_namelen`: its length (a `socklen_t`, 4 bytes). */
export const MSG_NAMELEN = 8;
/** `msg_iov`: a pointer to the `struct iovec` array. */
export const MSG_IOV = 16;
/** `msg_iovlen`: how many iovecs (a `size_t`). */
export const MSG_IOVLEN = 24;
/** `msg_control`: a pointer to the control messages. */
export const MSG_CONTROL = 32;
/** `msg_controllen`: their length (a `size_t`). */
export const MSG_CONTROLLEN = 40;
/** `msg_flags` (4 bytes). */
export const MSG_FLAGS = 48;
/** `msg_len`: bytes the kernel received or sent (4 bytes). */
export const MSG_LEN = 56;

/** `struct iovec`: `iov_base` (a pointer) and `iov_len` (a `size_t`). */
export const IOVEC_SIZE = 16;
/** `iov_len`. */
export const IOV_LEN = 8;

/** `struct cmsghdr`: `cmsg_len` (a `size_t`), `cmsg_level`, `cmsg_type`. */
export const CMSG_HEADER = 16;
/** `cmsg_level` (4 bytes). */
export const CMSG_LEVEL = 8;
/** `cmsg_type` (4 bytes). */
export const CMSG_TYPE = 12;

/** `struct timespec`: `tv_sec` (8 bytes), then `tv_nsec` (8 bytes). */
export const TIMESPEC_SIZE = 16;

/** `struct pollfd`: `fd` (4 bytes), `events` and `revents` (2 bytes each). */
export const POLLFD_SIZE = 8;
/** `events`. */
export const POLL_EVENTS = 4;

/**
 * Writes `value` (a pointer or a `size_t`, below 2^53) as a little-endian
 * 64-bit integer at byte `offset` (8-aligned) of `u32`'s buffer.
 */
export function write64(u32: Uint32Array, offset: number, value: number): void {
  u32[offset >> 2] = value % 2 ** 32;
  u32[(offset >> 2) + 1] = Math.floor(value / 2 ** 32);
}

/** `n` rounded up to a multiple of 8, as `CMSG_ALIGN` and the slots want. */
export function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}
