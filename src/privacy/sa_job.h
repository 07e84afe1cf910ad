/*
 * Secure aggregation in a job's rounds (RAGG_SECAGG=on, ragg-privacy(7)),
 * built on the blocks of privacy/secagg.h.
 *
 * Keys. Each worker draws an X25519 key pair once per process and sends
 * its public key to its agent with a MAC under a key derived from
 * RAGG_JOB_KEY over (its rank, the key, the job: RAGG_ROOT and its shape).
 * Once every worker of the agent sent one, the agent relays all of them to
 * every worker (RAGG_MSG_SA_KEY). Each worker checks every MAC and refuses
 * the job (RAGG_ERR_AUTH, naming the worker) when one fails, then derives
 * a pairwise seed with every other worker of the agent.
 *
 * A push (rounds after the declaration's round 0). Worker i encodes w g
 * (w its weight, each element clipped to +-RAGG_SECAGG_RANGE; with RAGG_DP
 * the whole w g first clipped to RAGG_DP_CLIP in L2 norm) in fixed point
 * modulo 2^32 (ragg__sa_encode, the scale ragg__sa_scale of the agent's m
 * workers), adds +-PRG(s_ij) for every other worker j and PRG(b_i) for a
 * self seed b_i drawn afresh for the round, and writes that. Its weight
 * travels the same way, in a 64-bit fixed point (2^-24 units) masked with
 * the same seeds, in the per-parity record at the end of its slot, with
 * b_i; the plain weight it writes is 0.
 *
 * The agent (stages/secagg.c) sums the 32-bit words, removes every
 * PRG(b_i), and decodes the sum and N. The pairwise seeds never reach the
 * agent; b_i does, which is why it is fresh per round: it strips only the
 * self mask, and the input stays masked by its pairwise masks.
 *
 * With RAGG_ON_WORKER_LOSS=continue the round seeds, the shares of b_i and
 * the agent's unmasking exchange of privacy/sa_recover.h replace that: b_i
 * is not in the record.
 */
#ifndef RAGG_PRIVACY_SA_JOB_H
#define RAGG_PRIVACY_SA_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "privacy/sa_recover.h"
#include "privacy/secagg.h"

struct ragg_ctx;
struct ragg_tensor;
struct ragg_opts;
struct ragg_tp_mr;
struct ragg__peer;
struct ragg__msg;
struct ragg__plan;

/* The weight's fixed point, and the largest weight a worker may push. */
#define RAGG_SA_WEIGHT_SCALE 0x1p24
#define RAGG_SA_WEIGHT_MAX   1048576.0

/* Words a worker encodes and masks, and an agent unmasks, per pass: a
 * multiple of RAGG_SA_BLOCK_ALIGN small enough to stay in cache. */
#define RAGG_SA_FUSE_WORDS 4096

/* Where the weight and the self seed lie in a worker's record. */
#define RAGG_SA_REC_WEIGHT 0
#define RAGG_SA_REC_SEED   8

/* A process's keys and what it learnt of the others'. */
struct ragg__sa_ctx {
	/* worker */
	uint8_t pk[RAGG_SA_PK_BYTES], sk[RAGG_SA_SK_BYTES];
	uint8_t rounding[RAGG_SA_SEED_BYTES]; /* the stochastic rounding's key */
	int m; /* workers of our agent (0: no key relayed yet) */
	int got; /* keys relayed so far */
	int me; /* our index among them */
	int *ranks;
	uint8_t (*pks)[RAGG_SA_PK_BYTES];
	uint8_t (*pair)[RAGG_SA_SEED_BYTES]; /* seed with each; ours unused */
	bool *masks; /* with each: a neighbour (RAGG_SECAGG_NEIGHBOURS) */
	bool ready; /* every key checked, the seeds derived */
	/* with dropout recovery (privacy/sa_recover.h): the crypto_box key
	 * with each, and the threshold */
	uint8_t (*boxk)[RAGG_SA_SEED_BYTES];
	int threshold;
	struct ragg__sa_pool *pool; /* the masking threads (privacy/sa_mask.h) */
	/* agent */
	uint8_t (*apk)[RAGG_SA_PK_BYTES];
	uint8_t (*amac)[16];
	bool *have;
	int nhave;
};

struct ragg__sa_tensor {
	double range; /* RAGG_SECAGG_RANGE */
	double scale; /* ragg__sa_scale(m, range): the agent's, or the worker's once keyed */
	int m;
	/* worker: the masked chunks (contribution layout) and the records
	 * by parity, both registered. */
	uint32_t *enc;
	struct ragg_tp_mr *enc_mr;
	uint8_t *rec;
	struct ragg_tp_mr *rec_mr;
	/* agent: each worker's slot region (set on the event loop as its
	 * writes land, read by the stage). */
	const uint8_t **slot;
	const struct ragg__plan *plan;
	/* dropout recovery (privacy/sa_recover.h), else NULL; the agent's
	 * unmasking of each parity's round, for the stage */
	struct ragg__sa_recover *dr;
	struct ragg__sa_unmask um[2];
};

/* Whether RAGG_SECAGG is on in these settings. */
bool ragg__sa_on(const struct ragg_opts *o);

/* A tensor's secure aggregation state when RAGG_SECAGG=on (t->sa): its
 * plan gets the record and the agent's stages; a worker sends its key
 * with its first tensor. Call after ragg__dp_tensor_init. 0, -ENOMEM or
 * RAGG_ERR_CONFIG. */
int ragg__sa_tensor_init(struct ragg_ctx *ctx, struct ragg_tensor *t);
void ragg__sa_tensor_free(struct ragg_tensor *t);
void ragg__sa_ctx_free(struct ragg_ctx *ctx);

/* Worker: encode and mask grad for this round, write the record (no
 * immediate: it lands before the chunks); *src is where the chunks travel
 * from and *mr their registration. Waits for the keys first. */
int ragg__sa_worker_push(struct ragg_tensor *t, const float *grad, double weight, int parity,
                         const void **src, struct ragg_tp_mr **mr);

/* Worker, after a push that returned 0: chunk c is masked (write it
 * then); the whole tensor is, and the masking threads are done with grad
 * (call it once, whatever happened meanwhile). 0 or RAGG_ERR_TIMEOUT. */
int ragg__sa_worker_chunk(struct ragg_tensor *t, size_t c);
int ragg__sa_worker_masked(struct ragg_tensor *t);

/* RAGG_MSG_SA_KEY at a worker (from its agent) and at an agent (from a
 * worker). */
void ragg__sa_worker_on_key(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m);
void ragg__sa_agent_on_key(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m);

/* Agent, event loop: worker i's slot region, for the stage. */
void ragg__sa_agent_landed(struct ragg_tensor *t, int worker, const void *slot);

/* Agent, event loop, with RAGG_TEST_SLOT_DUMP=PREFIX: chunk 0 of worker
 * `rank`'s contribution as it lies in our memory, to PREFIX.wRANK.rROUND
 * (with or without secure aggregation). */
void ragg__sa_test_dump(struct ragg_ctx *ctx, struct ragg_tensor *t, int rank, const void *data);

/* 64 bits of PRG(seed) for the weight of `tensor` in `round`. */
uint64_t ragg__sa_weight_mask(const uint8_t seed[RAGG_SA_SEED_BYTES], uint32_t tensor,
                              uint64_t round);

/* The MAC of a worker's key (exposed for the unit test). */
void ragg__sa_key_mac(const struct ragg_opts *o, int rank, const uint8_t pk[RAGG_SA_PK_BYTES],
                      uint8_t mac[16]);

#endif
