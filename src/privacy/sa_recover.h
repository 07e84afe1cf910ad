/*
 * Secure aggregation's dropout recovery (Bonawitz et al., CCS 2017), on
 * when RAGG_SECAGG=on and RAGG_ON_WORKER_LOSS=continue (ragg-privacy(7)).
 *
 * In this mode a push differs from the one of privacy/sa_job.h in three
 * ways. (1) The pairwise seed worker i masks with for worker j in round r
 * of tensor T is s_ij(T, r) = BLAKE2b(key s_ij, T, r), so that revealing it
 * reveals that round's masks only. (2) The self seed b_i of the round is
 * not written to the record (it stays zero there): worker i splits b_i in
 * m Shamir shares of threshold t (RAGG_SECAGG_THRESHOLD), encrypts share k
 * for worker k (crypto_box: XSalsa20-Poly1305 under the X25519 key of i
 * and k, the nonce naming T, r, i and k) and sends them to its agent,
 * which relays them (RAGG_MSG_SA_RECOVER, kind SHARE). (3) The agent
 * unmasks the round only through the workers:
 *
 * Once every worker of its group has landed the round and every share of
 * theirs was relayed, the agent fixes U, the workers whose contributions
 * it sums, and sends U to each of them (kind UNMASK). A worker answers
 * one UNMASK per (tensor, round), and only one in which it is in U: for
 * each j in U its share of b_j (kind BSHARE), for each j not in U that it
 * masks with its round seed s_ij(T, r) (kind PAIR), then kind END. The
 * agent rebuilds each b_j of U from t shares, and with the PAIR seeds
 * removes the masks the survivors shared with the workers lost (before
 * their contribution landed, or after it landed and before U was fixed:
 * either way they count in none of the round).
 *
 * Never both: a worker reveals, for any j and round, either what unmasks
 * j's self mask (j in U) or j's pairwise masks with it (j not in U),
 * never both, since it answers one U per round. A worker lost after U was
 * fixed and before the round was unmasked stays in U: its contribution is
 * summed (ragg__sa_recover_counted), its b_j rebuilt from the others'
 * shares, and U is never asked again. The round fails when fewer than t
 * of U can still answer, or when the lost worker had not yet revealed its
 * round seed with a worker out of U that it masks with.
 */
#ifndef RAGG_PRIVACY_SA_RECOVER_H
#define RAGG_PRIVACY_SA_RECOVER_H

#include <stdbool.h>
#include <stdint.h>

#include "privacy/secagg.h"

struct ragg_ctx;
struct ragg_tensor;
struct ragg__peer;
struct ragg__msg;

/* The kinds of RAGG_MSG_SA_RECOVER, in the top byte of its status; the
 * low 16 bits name a worker by its index among the agent's workers. */
enum ragg__sa_recover_kind {
	RAGG_SA_R_SHARE = 1, /* worker -> agent (status: to), agent -> worker (from) */
	RAGG_SA_R_UNMASK, /* agent -> worker: U as a bitmap in the descriptor */
	RAGG_SA_R_BSHARE, /* worker -> agent: its share of b_j (status: j) */
	RAGG_SA_R_PAIR, /* worker -> agent: its round seed with j (status: j) */
	RAGG_SA_R_END, /* worker -> agent: its answer is complete */
};

/* The unmasking of one round at the agent, for the stage: the self seeds
 * of U's members and the records of their contributions, in input order,
 * and the pairwise masks to take off. */
struct ragg__sa_unmask {
	bool on;
	uint64_t round;
	int nself;
	uint8_t (*self)[RAGG_SA_SEED_BYTES];
	const uint8_t **rec;
	int npair;
	uint8_t (*pair)[RAGG_SA_SEED_BYTES];
	int *sign; /* +1 or -1: what to add times PRG(pair) to take it off */
};

/* Whether dropout recovery is on (RAGG_SECAGG=on, RAGG_ON_WORKER_LOSS=continue). */
bool ragg__sa_recover_on(const struct ragg_ctx *ctx);

/* The threshold t for m workers: RAGG_SECAGG_THRESHOLD, or m / 2 + 1
 * when it is 0. */
int ragg__sa_threshold(const struct ragg_ctx *ctx, int m);

/* The round seed s_ij(T, r) from s_ij. */
void ragg__sa_round_seed(uint8_t out[RAGG_SA_SEED_BYTES], const uint8_t pair[RAGG_SA_SEED_BYTES],
                         uint32_t tensor, uint64_t round);

/* Worker, once the keys are checked: the box keys with every other
 * worker. 0 or -ENOMEM / -EINVAL. */
int ragg__sa_recover_keys(struct ragg_ctx *ctx);

/* Worker, in a push: the round seeds to mask with (*seeds[j] for each j
 * we mask with). 0 or -ENOMEM. */
int ragg__sa_recover_seeds(struct ragg_tensor *t, const uint8_t (**seeds)[RAGG_SA_SEED_BYTES]);

/* Worker, in a push: share `self` (the round's b_i) among the agent's
 * workers and send the shares. 0 or an error. */
int ragg__sa_recover_share(struct ragg_tensor *t, int parity, const uint8_t *self);

/* RAGG_MSG_SA_RECOVER at a worker and at an agent. */
void ragg__sa_recover_worker_msg(struct ragg_ctx *ctx, struct ragg__peer *p,
                                 const struct ragg__msg *m);
void ragg__sa_recover_agent_msg(struct ragg_ctx *ctx, struct ragg__peer *p,
                                const struct ragg__msg *m);

/* Agent: the round of t (parity) has every contribution of its group.
 * true: hold its sums, the unmasking is under way (ragg__elastic_start_round
 * is called once it is done); false: sum now. */
bool ragg__sa_recover_hold(struct ragg_ctx *ctx, struct ragg_tensor *t, int parity);

/* Agent: worker p is out of the group; says whether its contribution to
 * the current round had landed. */
void ragg__sa_recover_lost(struct ragg_ctx *ctx, const struct ragg__peer *p);

/* Agent: whether the round of t (parity), unmasked, counts worker i's
 * contribution although it left the group (it was lost while the round
 * was being unmasked, after U was fixed with it in). */
bool ragg__sa_recover_counted(const struct ragg_tensor *t, int parity, int worker);

void ragg__sa_recover_free(struct ragg_tensor *t);

#endif
