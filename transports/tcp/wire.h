/*
 * The tcp transport's wire format.
 *
 * Every frame is a fixed 40-byte header followed by `length` payload bytes.
 * All fields are little-endian so mixed-endian peers interoperate:
 *
 *   0  magic   u32  "RGTP"
 *   4  version u8   RAGG__TCP_VERSION
 *   5  type    u8   enum ragg__tcp_type
 *   6  flags   u16  RAGG__TCP_F_*; only WRITE defines any
 *   8  imm     u32  WRITE: the immediate; ERR: the status (negative, as i32)
 *  12  region  u32  WRITE: the receiver's region id
 *  16  key     u64  WRITE: the region's key
 *  24  offset  u64  WRITE: byte offset inside the region
 *  32  length  u64  payload bytes that follow the header
 *
 * Magic and version sit first and never move, so a peer of another version
 * is recognised as such (RAGG_ERR_VERSION) rather than as garbage. Fields a
 * type does not use must be zero: strict decoding turns a stream that lost
 * framing into RAGG_ERR_PROTO at the first header instead of a write to a
 * random place.
 */
#ifndef RAGG_TCP_WIRE_H
#define RAGG_TCP_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <ragg/transport.h>

#define RAGG__TCP_MAGIC    0x50544752u /* "RGTP" read as a little-endian u32 */
#define RAGG__TCP_VERSION  1
#define RAGG__TCP_HDR_SIZE 40
/* Largest single write: fits size_t, ssize_t and an off_t with room. */
#define RAGG__TCP_MAX_WRITE (UINT64_C(1) << 48)

enum ragg__tcp_type {
	RAGG__TCP_HELLO = 1, /* connector -> acceptor, payload: private data */
	RAGG__TCP_ACCEPT, /* acceptor -> connector, payload: private data */
	RAGG__TCP_WRITE, /* payload lands in region at offset */
	RAGG__TCP_MSG, /* control message, payload <= RAGG_TP_MSG_MAX */
	RAGG__TCP_ERR, /* the sender is dropping the connection; imm: why */
};

#define RAGG__TCP_F_IMM (1u << 0) /* WRITE: report the immediate on landing */

struct ragg__tcp_frame {
	uint8_t version;
	uint8_t type;
	uint16_t flags;
	uint32_t imm;
	uint32_t region;
	uint64_t key;
	uint64_t offset;
	uint64_t length;
};

/* The packed region descriptor: format byte, region id, key, length. The
 * length lets a sender refuse an out-of-bounds write before it travels. */
#define RAGG__TCP_RDESC_FORMAT 1
#define RAGG__TCP_RDESC_LEN    21

struct ragg__tcp_rdesc {
	uint32_t region;
	uint64_t key;
	uint64_t length;
};

/* f->version is ignored: frames always go out as RAGG__TCP_VERSION. */
void ragg__tcp_frame_encode(const struct ragg__tcp_frame *f, uint8_t hdr[RAGG__TCP_HDR_SIZE]);
/* 0, or RAGG_ERR_PROTO (bad magic, type, flags, length, unused field set) or
 * RAGG_ERR_VERSION. *f is written only on success, except that on
 * RAGG_ERR_VERSION f->version holds the peer's version for the message. */
int ragg__tcp_frame_decode(const uint8_t hdr[RAGG__TCP_HDR_SIZE], struct ragg__tcp_frame *f);

/* The same checks on the first `got` bytes of a header still arriving, so
 * a peer sending a few wrong bytes and then waiting is dropped at once. */
int ragg__tcp_frame_precheck(const uint8_t *hdr, size_t got);

void ragg__tcp_rdesc_pack(const struct ragg__tcp_rdesc *d, struct ragg_tp_rdesc *out);
/* 0 or -EINVAL when the blob is not a tcp descriptor. */
int ragg__tcp_rdesc_unpack(const struct ragg_tp_rdesc *in, struct ragg__tcp_rdesc *d);

#endif
