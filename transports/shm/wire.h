/*
 * The shm transport's formats: the control packets of the unix socket, the
 * completion ring in shared memory, and the packed region descriptor.
 *
 * Both ends run on one host, so fields are in host byte order; magic and
 * version still come first so that two builds of different versions meet
 * as RAGG_ERR_VERSION rather than as garbage.
 *
 * Control packets (one SOCK_SEQPACKET datagram each, fixed size):
 *
 *   HELLO    connector -> acceptor: private data; fds: the connector's
 *            completion ring, its device's eventfd, its region table
 *   ACCEPT   acceptor -> connector: the same the other way
 *   MAP_REQ  writer -> owner: region id, key and length from a descriptor
 *   MAP_REP  owner -> writer: where the region is and its generation;
 *            fd: the memfd holding it, for a shared region
 *   ERR      the sender drops the connection; status says why
 *
 * Data never travels on the socket: payloads are copied straight into the
 * peer's memory and their completions (and control messages, so that they
 * stay in order with the writes) go through the ring.
 */
#ifndef RAGG_SHM_WIRE_H
#define RAGG_SHM_WIRE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <ragg/transport.h>

#define RAGG__SHM_MAGIC   0x4d534752u /* "RGSM" read as a little-endian u32 */
#define RAGG__SHM_VERSION 1

enum ragg__shm_pkt_type {
	RAGG__SHM_HELLO = 1,
	RAGG__SHM_ACCEPT,
	RAGG__SHM_MAP_REQ,
	RAGG__SHM_MAP_REP,
	RAGG__SHM_ERR,
};

/* Region kinds, in descriptors and MAP_REP. */
#define RAGG__SHM_KIND_SHARED  1 /* inside a mem_alloc() memfd: the writer maps it */
#define RAGG__SHM_KIND_PRIVATE 2 /* ordinary memory: process_vm_writev(2) */

struct ragg__shm_pkt {
	uint32_t magic;
	uint8_t version;
	uint8_t type;
	uint8_t kind; /* MAP_REP */
	uint8_t nfds; /* fds that travel with the packet */
	int32_t status; /* ERR: why (negative) */
	uint32_t region; /* MAP_*: region id */
	uint64_t key; /* MAP_*: the region's key */
	uint64_t length; /* MAP_*: the region's length */
	uint64_t where; /* MAP_REP: offset in the memfd (shared), address (private) */
	uint64_t gen; /* MAP_REP: generation in the owner's region table */
	uint32_t ring_slots; /* HELLO/ACCEPT: the sender's completion ring */
	uint32_t max_regions; /* HELLO/ACCEPT: entries of its region table */
	uint32_t priv_len; /* HELLO/ACCEPT */
	uint8_t priv[RAGG_TP_PRIV_MAX];
};

#define RAGG__SHM_PKT_FDS_MAX 3

/*
 * The completion ring: single producer (the peer), single consumer (the
 * ring's owner, who created it). 16-byte records; a WRITE record says a
 * write with an immediate landed, a MSG record is followed by its payload
 * in the next ceil(len / 16) slots (wrapping like the records do).
 *
 * The producer writes records, then publishes them with a release store of
 * tail; the consumer reads tail with acquire, copies out, and frees the
 * slots with a release store of head. A payload copied into a region before
 * its record was published is therefore visible to whoever sees the record.
 *
 * Sleeping (Dekker): a consumer about to sleep stores `sleeping`, fences,
 * then looks at tail; a producer publishes tail, fences, then looks at
 * `sleeping` and, if set, takes it and writes the consumer's eventfd. One
 * of the two always sees the other, so no wakeup is lost. `starved` is the
 * same the other way: a producer that found the ring full, waiting for the
 * consumer to free slots.
 *
 * Each word the two sides write lives on its own cache line. Everything in
 * the ring is written by the peer too, so the consumer checks whatever it
 * reads from it (counts, types, lengths) before use.
 */
#define RAGG__SHM_RING_MAGIC 0x474e4952u /* "RING" */
#define RAGG__SHM_REC_SIZE   16

enum ragg__shm_rec_type {
	RAGG__SHM_REC_WRITE = 1,
	RAGG__SHM_REC_MSG,
};

struct ragg__shm_rec {
	uint8_t type;
	uint8_t pad[3];
	uint32_t imm;
	uint64_t len;
};

struct ragg__shm_ring_hdr {
	uint32_t magic;
	uint32_t slots;
	_Alignas(64) _Atomic uint64_t tail;
	_Alignas(64) _Atomic uint64_t head;
	_Alignas(64) _Atomic uint32_t sleeping;
	_Alignas(64) _Atomic uint32_t starved;
	_Alignas(64) struct ragg__shm_rec recs[];
};

_Static_assert(sizeof(struct ragg__shm_rec) == RAGG__SHM_REC_SIZE, "ring record size");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
               "ring words must be lock-free to be shared between processes");

/* Slots a record of its kind takes. */
static inline uint32_t ragg__shm_rec_slots(size_t msg_len)
{
	return 1 + (uint32_t)((msg_len + RAGG__SHM_REC_SIZE - 1) / RAGG__SHM_REC_SIZE);
}

/*
 * The packed region descriptor: format byte, kind, region id, key, length
 * (22 bytes). Where the region lies is not in it: the writer asks the owner
 * (MAP_REQ), which checks id, key and length first, so only regions it
 * registered and described are ever reached. The length lets the writer
 * refuse an out-of-bounds write before it asks.
 */
#define RAGG__SHM_RDESC_FORMAT 0x53 /* 'S' */
#define RAGG__SHM_RDESC_LEN    22

struct ragg__shm_rdesc {
	uint8_t kind;
	uint32_t region;
	uint64_t key;
	uint64_t length;
};

void ragg__shm_rdesc_pack(const struct ragg__shm_rdesc *d, struct ragg_tp_rdesc *out);
/* 0, or -EINVAL when the blob is not an shm descriptor. */
int ragg__shm_rdesc_unpack(const struct ragg_tp_rdesc *in, struct ragg__shm_rdesc *d);

#endif
