/*
 * ragg's own wire: the immediate of every data write, the hello carried in
 * a connection's private data, and the control messages. Encoded explicitly
 * little-endian so mixed hosts agree; every decoder checks lengths and
 * values and refuses what it does not understand.
 */
#ifndef RAGG_PROTO_H
#define RAGG_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <ragg/ragg.h>
#include <ragg/transport.h>

#define RAGG_PROTO_MAGIC   0x47474152u /* "RAGG" */
#define RAGG_PROTO_VERSION 1u

/* The longest reason an abort carries; a longer one is cut. */
#define RAGG_ABORT_REASON_MAX 200

/* Immediate: round parity (1 bit) | tensor id (7 bits) | chunk (24 bits). */
#define RAGG_IMM_MAX_CHUNKS (1u << 24)
static inline uint32_t ragg__imm_encode(int parity, int tensor, uint32_t chunk)
{
	return ((uint32_t)(parity & 1) << 31) | ((uint32_t)(tensor & 0x7f) << 24) |
	       (chunk & 0xffffffu);
}
static inline int ragg__imm_parity(uint32_t imm)
{
	return (int)(imm >> 31);
}
static inline int ragg__imm_tensor(uint32_t imm)
{
	return (int)((imm >> 24) & 0x7f);
}
static inline uint32_t ragg__imm_chunk(uint32_t imm)
{
	return imm & 0xffffffu;
}

/* Connection private data, both ways. The proof is a keyed hash of the
 * rest under RAGG_JOB_KEY (zero without a key). */
#define RAGG_HELLO_PROOF_BYTES 16
struct ragg__hello {
	uint32_t magic;
	uint16_t version;
	uint8_t role;
	uint32_t rank;
	uint16_t workers, agents, servers;
	uint8_t proof[RAGG_HELLO_PROOF_BYTES];
};
#define RAGG_HELLO_WIRE_BYTES 34

void ragg__hello_init(struct ragg__hello *h, const struct ragg_opts *o);
size_t ragg__hello_encode(const struct ragg__hello *h, uint8_t *buf);
/* 0, RAGG_ERR_PROTO (not ragg), RAGG_ERR_VERSION, or RAGG_ERR_AUTH. */
int ragg__hello_decode(const void *buf, size_t len, const char *job_key, struct ragg__hello *h);

enum ragg__msg_type {
	RAGG_MSG_DECLARE = 1, /* tensor layout + the sender's receive region */
	RAGG_MSG_DECLARE_ACK, /* status + the slot region for the sender */
	/* The sender is done; its connection may close. With a status < 0 the
	 * job failed there; count, when not 0, is 1 + the rank of the worker
	 * whose leaving failed it (elastic.h). */
	RAGG_MSG_BYE,
	/* worker -> agent: its gradient buffer (rdesc), announcement `count`;
	 * the agent may map it and read pushes in place. */
	RAGG_MSG_GRAD_AT,
	/* agent -> worker: announcement `count` is mapped: push in place. */
	RAGG_MSG_GRAD_MAPPED,
	/* agent -> worker whose parameter buffer it cannot map: its own
	 * parameter region (rdesc), which the worker copies chunks out of. */
	RAGG_MSG_PARAMS_AT,
	/* agent -> that worker: a chunk is ready there; `count` is the
	 * immediate a write of it would carry. A message, not a write of
	 * length 0: the worker's buffer is private memory, which a write,
	 * even an empty one, must be allowed to reach. */
	RAGG_MSG_PARAMS_READY,
	/* Both ways, right after connecting and before anything else: one
	 * job-wide setting of the sender. name_hash is ragg__name_hash of the
	 * variable's name, count its canonical value (ragg__setting_canon),
	 * chunk_bytes the number of job-wide settings the sender has. */
	RAGG_MSG_SETTING,
	/* Secure aggregation (privacy/sa_job.h): a worker's X25519 public
	 * key (rdesc, 32 bytes) and its job-key MAC (count, chunk_bytes);
	 * worker -> agent once, then agent -> every worker of the agent, one
	 * per worker: status its rank, name_hash how many there are. */
	RAGG_MSG_SA_KEY,
	/* RAGG_ON_WORKER_LOSS=continue: worker `count` left the job (agent ->
	 * servers and its workers, server -> every agent). */
	RAGG_MSG_WORKER_LEFT,
	/* Asynchronous rounds (RAGG_STALENESS > 0): the version of the
	 * contribution or parameter chunk just written (stale.h). */
	RAGG_MSG_VERSION,
	/* The job was aborted (ragg_abort(3)), by the sender or relayed by
	 * it: status RAGG_ERR_ABORTED, tensor the role and count the rank of
	 * the process that aborted, and in place of the descriptor the
	 * reason, text_len bytes of text (at most RAGG_ABORT_REASON_MAX). */
	RAGG_MSG_ABORT,
	/* Secure aggregation's dropout recovery (privacy/sa_recover.h):
	 * shares of the self seeds, the agent's request to unmask a round
	 * and the workers' answers; the kind in status's top byte, tensor,
	 * name_hash the round, 32 bytes in rdesc (a share's 48-byte box
	 * continues in count and chunk_bytes). */
	RAGG_MSG_SA_RECOVER,
};
#define RAGG_MSG_LAST RAGG_MSG_SA_RECOVER

struct ragg__msg {
	uint8_t type;
	uint8_t tensor;
	int32_t status;
	uint64_t count;
	uint64_t chunk_bytes;
	uint64_t name_hash;
	struct ragg_tp_rdesc rdesc;
	/* RAGG_MSG_ABORT only: the reason, not NUL-terminated. Encoding
	 * reads it where it points (memory the sender keeps until the
	 * message left); decoding points it into the received bytes. */
	const char *text;
	uint8_t text_len;
};
#define RAGG_MSG_HEAD_BYTES (1 + 1 + 4 + 8 + 8 + 8 + 1)
#define RAGG_MSG_WIRE_MAX                                                                          \
	(RAGG_MSG_HEAD_BYTES +                                                                     \
	 (RAGG_ABORT_REASON_MAX > RAGG_TP_RDESC_MAX ? RAGG_ABORT_REASON_MAX : RAGG_TP_RDESC_MAX))

size_t ragg__msg_encode(const struct ragg__msg *m, uint8_t *buf);
int ragg__msg_decode(const void *buf, size_t len, struct ragg__msg *m);

uint64_t ragg__name_hash(const char *name);

#endif
