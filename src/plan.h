/*
 * The tensor plan: everything about a tensor that every process of the job
 * agrees on at declaration and that no round changes.
 *
 *   - chunk geometry: chunk c covers elements [c * chunk_elems, ...) of the
 *     flat tensor, the last one shorter; server c mod n owns it, as its
 *     local chunk c / n; a server's owned chunks lie back to back.
 *   - slot layout: a sender's slot region holds RAGG_SLOT_META_BYTES of
 *     weights (one double per parity), then its data of parity 0, then of
 *     parity 1. A worker's data is the whole tensor; an agent's data at a
 *     server is that server's owned chunks.
 *   - the contribution: how many bytes a sender writes for a chunk, a
 *     function of the codec (RAGG_COMPRESS): the chunk's floats without
 *     one, and in round 0 (the initial broadcast travels exact); else the
 *     codec's encoding of the chunk. A slot holds each chunk in `stride`
 *     bytes, room for either form.
 *   - the agent's stage list, and whether the in-place fast path is
 *     allowed (every stage supports it), decided here once.
 *   - the check of every landed write (ragg__plan_check_write).
 *
 * Nothing outside this file computes an offset from chunk_elems.
 */
#ifndef RAGG_PLAN_H
#define RAGG_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compress/codec.h"

/* Sender layout of every slot region: weights by parity, then the data of
 * parity 0, then of parity 1. */
#define RAGG_SLOT_META_BYTES 64u

/* The smallest chunk; a chunk is also a whole number of floats. */
#define RAGG_PLAN_MIN_CHUNK_BYTES 4096u

#define RAGG_PLAN_MAX_STAGES 8

struct ragg__stage;

/* A stage of the agent's list, with its configuration. */
struct ragg__plan_stage {
	const struct ragg__stage *stage;
	const void *arg; /* the stage's configuration, or NULL */
};

struct ragg__plan {
	size_t count; /* floats */
	size_t bytes; /* count * sizeof(float) */
	size_t chunk_elems, chunk_bytes, nchunks;
	int servers;
	/* The push codec (codec.codec NULL: none, contributions are floats). */
	struct ragg__codec_spec codec;
	size_t stride; /* bytes a chunk takes in a slot: chunk_bytes without a codec */
	/* The pull codec (RAGG_COMPRESS_PULL; codec NULL: none, parameters
	 * travel exact): servers send the encoded update of each chunk into
	 * the pull area after the parameters of an agent's parameter region,
	 * pull_stride bytes per chunk; every pull_resync rounds (0: never)
	 * and in round 0 the parameters travel exact instead. */
	struct ragg__codec_spec pull;
	size_t pull_stride;
	uint64_t pull_resync;
	/* The worker -> agent hop's codec (RAGG_WORKER_COMPRESS; codec NULL:
	 * the workers' floats travel): the push codec unless set apart, and
	 * the bytes a chunk takes in a worker's slot. */
	struct ragg__codec_spec wcodec;
	size_t wstride;
	struct ragg__plan_stage stages[RAGG_PLAN_MAX_STAGES];
	int nstages;
	/* The agent may run its stages straight into the server's mapped
	 * slot: every stage can (ragg__plan_set_stages decides it). */
	bool in_place;
	/* Differential privacy: a worker's slot region ends with its norm
	 * claims, one float per chunk and parity (privacy/dp_job.h). */
	bool claims;
	/* Secure aggregation: a worker's slot region ends with its masked
	 * weight and self-mask seed, by parity (privacy/sa_job.h). */
	bool secagg;
};

/* Whether chunk_bytes is a valid chunk size: >= 4096 and a multiple of 4. */
bool ragg__plan_chunk_bytes_ok(size_t chunk_bytes);

/* The plan of a tensor of `count` floats cut into chunk_bytes chunks over
 * `servers` servers, with the default stage list (the weighted sum).
 * -EINVAL: count 0 or too large, servers < 1, or more chunks than an
 * immediate can name; RAGG_ERR_PROTO: a chunk size that breaks the rule.
 * *pl is written only on success. */
int ragg__plan_init(struct ragg__plan *pl, size_t count, size_t chunk_bytes, int servers);

/* Compress contributions with `spec` (NULL or the codec "none": don't):
 * sets the stride and the stage list (the codec stage, which decodes the
 * workers' contributions, sums them and encodes the sum). Call it on the
 * plan where it stays: the stage's configuration points into it.
 * -EINVAL: a chunk whose encoding cannot be sized. */
int ragg__plan_set_codec(struct ragg__plan *pl, const struct ragg__codec_spec *spec);

/* Whether round `round`'s contributions are encoded (round 0's never are). */
static inline bool ragg__plan_coded(const struct ragg__plan *pl, uint64_t round)
{
	return pl->codec.codec && round > 0;
}

/* The workers encode with `spec` instead of the push codec (NULL or
 * "none": they send their floats); call it after ragg__plan_set_codec,
 * on the plan where it stays. -EINVAL: a chunk whose encoding cannot be
 * sized. */
int ragg__plan_set_worker_codec(struct ragg__plan *pl, const struct ragg__codec_spec *spec);

/* Whether round `round`'s worker contributions are encoded (round 0's
 * never are). */
static inline bool ragg__plan_wcoded(const struct ragg__plan *pl, uint64_t round)
{
	return pl->wcodec.codec && round > 0;
}

/* Send updates encoded with `spec` (NULL or "none": exact parameters),
 * exact every `resync` rounds (0: only round 0). -EINVAL: a chunk whose
 * encoding cannot be sized. */
int ragg__plan_set_pull(struct ragg__plan *pl, const struct ragg__codec_spec *spec,
                        uint64_t resync);

/* Whether round `round`'s parameters travel as an encoded update. */
static inline bool ragg__plan_pull_coded(const struct ragg__plan *pl, uint64_t round)
{
	return pl->pull.codec && round > 0 && (pl->pull_resync == 0 || round % pl->pull_resync);
}

/* The seed codec and decoder share for chunk c of round `round`. */
static inline uint64_t ragg__plan_seed(uint64_t round, size_t c)
{
	return round << 32 ^ (uint64_t)c;
}

/* Replace the stage list; the in-place fast path is allowed when every
 * stage is in-place capable. -EINVAL: too many stages, or none. */
int ragg__plan_set_stages(struct ragg__plan *pl, const struct ragg__plan_stage *stages, int n);

/* Chunk c's byte offset in the flat tensor, and its length in bytes. */
static inline size_t ragg__plan_chunk_off(const struct ragg__plan *pl, size_t c)
{
	return c * pl->chunk_bytes;
}

static inline size_t ragg__plan_chunk_len(const struct ragg__plan *pl, size_t c)
{
	size_t first = c * pl->chunk_elems;
	size_t n = pl->count - first;
	return (n < pl->chunk_elems ? n : pl->chunk_elems) * sizeof(float);
}

static inline size_t ragg__plan_chunk_elems(const struct ragg__plan *pl, size_t c)
{
	return ragg__plan_chunk_len(pl, c) / sizeof(float);
}

/* The server that owns chunk c, and c's index among that server's chunks. */
static inline int ragg__plan_owner(const struct ragg__plan *pl, size_t c)
{
	return (int)(c % (size_t)pl->servers);
}

static inline size_t ragg__plan_local(const struct ragg__plan *pl, size_t c)
{
	return c / (size_t)pl->servers;
}

/* The global chunk of server s's local chunk lc. */
static inline uint32_t ragg__plan_global(const struct ragg__plan *pl, int s, size_t lc)
{
	return (uint32_t)(lc * (size_t)pl->servers + (size_t)s);
}

/* How many chunks server s owns, and the bytes they take back to back. */
static inline size_t ragg__plan_owned(const struct ragg__plan *pl, int s)
{
	size_t n = (size_t)pl->servers;
	return (size_t)s < pl->nchunks ? (pl->nchunks - (size_t)s + n - 1) / n : 0;
}

static inline size_t ragg__plan_owned_bytes(const struct ragg__plan *pl, int s)
{
	return ragg__plan_owned(pl, s) * pl->chunk_bytes;
}

/* The pull area: chunk c's encoded update at this offset of an agent's
 * parameter region, and the size of that region. */
static inline size_t ragg__plan_pull_off(const struct ragg__plan *pl, size_t c)
{
	return (pl->bytes + 63) / 64 * 64 + c * pl->pull_stride;
}

static inline size_t ragg__plan_params_region_bytes(const struct ragg__plan *pl)
{
	return pl->pull.codec ? ragg__plan_pull_off(pl, pl->nchunks) : pl->bytes;
}

/* The bytes of chunk c's encoded update. */
static inline size_t ragg__plan_pull_len(const struct ragg__plan *pl, size_t c)
{
	return ragg__codec_max_encoded_size(&pl->pull, ragg__plan_chunk_len(pl, c) / sizeof(float));
}

/* The seed of chunk c's update in round `round` (apart from the push's). */
static inline uint64_t ragg__plan_pull_seed(uint64_t round, size_t c)
{
	return (round << 32 ^ (uint64_t)c) ^ 0x80000000u;
}

/* Chunk c's byte offset among its owner's chunks (server-side layout). */
static inline size_t ragg__plan_owned_off(const struct ragg__plan *pl, size_t c)
{
	return ragg__plan_local(pl, c) * pl->chunk_bytes;
}

/* Bytes a sender writes for chunk c with `codec` on its hop: encoded
 * (`coded`, see ragg__plan_coded) or the chunk's floats. */
static inline size_t ragg__plan_hop_len(const struct ragg__plan *pl,
                                        const struct ragg__codec_spec *codec, size_t c, bool coded)
{
	if (coded)
		return ragg__codec_max_encoded_size(codec, ragg__plan_chunk_elems(pl, c));
	return ragg__plan_chunk_len(pl, c);
}

/* An agent's contribution (RAGG_COMPRESS's codec). */
static inline size_t ragg__plan_contrib_len(const struct ragg__plan *pl, size_t c, bool coded)
{
	return ragg__plan_hop_len(pl, &pl->codec, c, coded);
}

/* The data bytes of all chunks of a worker's contribution, slot layout
 * (chunk c at c * stride): the tensor's bytes without a codec. */
static inline size_t ragg__plan_contrib_bytes(const struct ragg__plan *pl)
{
	return pl->codec.codec ? pl->nchunks * pl->stride : pl->bytes;
}

/* Chunk c's offset in that layout. */
static inline size_t ragg__plan_contrib_off(const struct ragg__plan *pl, size_t c)
{
	return c * pl->stride;
}

/* The same for a worker's contribution (the worker hop's codec). */
static inline size_t ragg__plan_wcontrib_len(const struct ragg__plan *pl, size_t c, bool coded)
{
	return ragg__plan_hop_len(pl, &pl->wcodec, c, coded);
}

static inline size_t ragg__plan_wcontrib_bytes(const struct ragg__plan *pl)
{
	return pl->wcodec.codec ? pl->nchunks * pl->wstride : pl->bytes;
}

static inline size_t ragg__plan_wcontrib_off(const struct ragg__plan *pl, size_t c)
{
	return c * pl->wstride;
}

/* Offset in a slot region, whose data part holds data_bytes per parity, of
 * byte `off` of the data of `parity`. */
static inline uint64_t ragg__slot_offset(int parity, size_t data_bytes, size_t off)
{
	return RAGG_SLOT_META_BYTES + (uint64_t)parity * data_bytes + off;
}

/* The size of a slot region holding data_bytes per parity. */
static inline size_t ragg__slot_bytes(size_t data_bytes)
{
	return RAGG_SLOT_META_BYTES + 2 * data_bytes;
}

/* Where a worker's chunk c of `parity` lands in its slot at the agent. */
static inline uint64_t ragg__plan_worker_slot_off(const struct ragg__plan *pl, int parity, size_t c)
{
	return ragg__slot_offset(parity, ragg__plan_wcontrib_bytes(pl), ragg__plan_wcontrib_off(pl, c));
}

/* Where a worker's norm claims of `parity` land in its slot (after the
 * data of both parities), when the plan has claims. */
static inline uint64_t ragg__plan_worker_claims_off(const struct ragg__plan *pl, int parity)
{
	return ragg__slot_bytes(ragg__plan_wcontrib_bytes(pl)) +
	       (uint64_t)parity * pl->nchunks * sizeof(float);
}

/* Secure aggregation's per-parity record in a worker's slot (after the
 * claims, if any): its masked weight and its self-mask seed. */
#define RAGG_PLAN_SA_BYTES 64u
static inline uint64_t ragg__plan_worker_sa_off(const struct ragg__plan *pl, int parity)
{
	return ragg__slot_bytes(ragg__plan_wcontrib_bytes(pl)) +
	       (pl->claims ? 2 * pl->nchunks * sizeof(float) : 0) +
	       (uint64_t)parity * RAGG_PLAN_SA_BYTES;
}

/* The size of a worker's slot region at its agent. */
static inline size_t ragg__plan_worker_slot_bytes(const struct ragg__plan *pl)
{
	return ragg__slot_bytes(ragg__plan_wcontrib_bytes(pl)) +
	       (pl->claims ? 2 * pl->nchunks * sizeof(float) : 0) +
	       (pl->secagg ? 2 * RAGG_PLAN_SA_BYTES : 0);
}

/* The data bytes per parity of an agent's slot at server s: its owned
 * chunks, `stride` bytes each. */
static inline size_t ragg__plan_owned_slot_bytes(const struct ragg__plan *pl, int s)
{
	return ragg__plan_owned(pl, s) * pl->stride;
}

/* Where an agent's chunk c of `parity` lands in its slot at c's owner. */
static inline uint64_t ragg__plan_server_slot_off(const struct ragg__plan *pl, int parity, size_t c)
{
	return ragg__slot_offset(parity, ragg__plan_owned_slot_bytes(pl, ragg__plan_owner(pl, c)),
	                         ragg__plan_local(pl, c) * pl->stride);
}

/* The size of an agent's slot region at server s. */
static inline size_t ragg__plan_server_slot_bytes(const struct ragg__plan *pl, int s)
{
	return ragg__slot_bytes(ragg__plan_owned_slot_bytes(pl, s));
}

/*
 * A landed write, and what its receiver expects. Every role checks every
 * write that lands with ragg__plan_check_write, before it touches anything:
 * the write names a tensor, a chunk and a round parity in its immediate,
 * comes from a sender and carries a length.
 */
struct ragg__expect {
	/* The tensor's plan; NULL when the tensor is unknown or its
	 * declaration has not completed (nothing may land then). */
	const struct ragg__plan *plan;
	int parity; /* the parity of the round the receiver is in */
	int owner; /* only chunks this server owns, or -1: any chunk */
	bool sender_ok; /* the sender is one that writes this tensor here */
	bool room; /* a write of this round is still awaited from it */
	bool in_place_ok; /* a write of length 0 (data in place) is allowed */
	bool coded; /* the write carries the codec's encoding (ragg__plan_coded) */
	bool wcoded; /* a worker's write carries the worker hop's (ragg__plan_wcoded) */
	bool pull_coded; /* the write carries an encoded update (ragg__plan_pull_coded) */
};

/* 0 when the write (chunk, parity, len) is one the receiver expects, else
 * RAGG_ERR_PROTO and *why names the field at fault. */
int ragg__plan_check_write(const struct ragg__expect *e, uint32_t chunk, int parity, size_t len,
                           const char **why);

/*
 * Which senders' writes of each chunk have landed in the current round, by
 * parity: a receiver counts a write only when its sender's bit was clear
 * (ragg__seen_mark), so a sender that writes a chunk twice in one round is
 * refused instead of being counted as another sender's arrival. The bits
 * of a chunk are cleared when the chunk's round completes there.
 */
struct ragg__seen {
	uint64_t *bits[2]; /* [parity][chunk * words + sender / 64] */
	size_t words; /* per chunk */
	size_t nchunks;
};

/* 0 or -ENOMEM; nothing allocated per round afterwards. */
int ragg__seen_init(struct ragg__seen *s, size_t nchunks, int senders);
void ragg__seen_free(struct ragg__seen *s);

/* Whether sender's write of chunk c already landed this round. */
static inline bool ragg__seen_has(const struct ragg__seen *s, int parity, size_t c, int sender)
{
	return s->bits[parity & 1][c * s->words + (size_t)sender / 64] >> (sender % 64) & 1;
}

static inline void ragg__seen_mark(struct ragg__seen *s, int parity, size_t c, int sender)
{
	s->bits[parity & 1][c * s->words + (size_t)sender / 64] |= 1ull << (sender % 64);
}

static inline void ragg__seen_clear(struct ragg__seen *s, int parity, size_t c)
{
	for (size_t w = 0; w < s->words; w++)
		s->bits[parity & 1][c * s->words + w] = 0;
}

#endif
