/* Secure aggregation's dropout recovery: shares of the self seeds, the
 * agent's unmasking exchange (privacy/sa_recover.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "agent.h"
#include "core.h"
#include "elastic.h"
#include "log.h"
#include "privacy/sa_job.h"
#include "privacy/sa_recover.h"
#include "settings.h"

#define SEED RAGG_SA_SEED_BYTES
#define BOX  (SEED + crypto_box_MACBYTES)

enum { X_NONE, X_SHARES, X_ASKED, X_DONE };

struct ragg__sa_recover {
	int m, t;
	/* worker: this round's self seed and shares by parity, the shares
	 * others sent us (row parity * m + from) and the round each is of */
	uint64_t pushed[2];
	uint8_t self[2][SEED];
	uint8_t (*sh)[SEED];
	uint64_t *sh_round;
	uint64_t answered; /* 1 + the last round we answered an UNMASK of */
	uint8_t (*rseed)[SEED]; /* the round seeds of the current push */
	/* agent: the exchange of the round under way */
	int xstate, xparity;
	uint64_t xround;
	bool *in_u, *ended, *masks; /* masks: m x m, who masks with whom */
	int *relayed;
	uint64_t *relayed_round;
	uint8_t (*bsh)[SEED]; /* bsh[j * m + k]: k's share of b_j */
	bool *bhave;
	uint8_t (*pseed)[SEED]; /* pseed[k * m + j]: k's round seed with j */
	bool *phave;
	/* the stage's tables, by parity */
	uint8_t (*self_out)[SEED];
	const uint8_t **rec_out;
	uint8_t (*pair_out)[SEED];
	int *sign_out;
};

static int status_of(int kind, int who)
{
	return (int)((unsigned)kind << 24 | (unsigned)who);
}

static int kind_of(const struct ragg__msg *m)
{
	return (int)((uint32_t)m->status >> 24);
}

static int who_of(const struct ragg__msg *m)
{
	return (int)((uint32_t)m->status & 0xffffu);
}

static void put_le(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

bool ragg__sa_recover_on(const struct ragg_ctx *ctx)
{
	return ctx->on_loss_continue && ragg__sa_on(&ctx->opts);
}

int ragg__sa_threshold(const struct ragg_ctx *ctx, int m)
{
	long t = ragg__opt_long(&ctx->opts, "RAGG_SECAGG_THRESHOLD");
	return t > 0 ? (int)t : m / 2 + 1;
}

void ragg__sa_round_seed(uint8_t out[SEED], const uint8_t pair[SEED], uint32_t tensor,
                         uint64_t round)
{
	static const uint8_t label[] = "ragg secagg round seed";
	uint8_t head[12];
	crypto_generichash_state h;
	put_le(head, tensor);
	put_le(head + 4, round);
	crypto_generichash_init(&h, pair, SEED, SEED);
	crypto_generichash_update(&h, label, sizeof(label));
	crypto_generichash_update(&h, head, sizeof(head));
	crypto_generichash_final(&h, out, SEED);
}

static void share_nonce(uint8_t nonce[crypto_box_NONCEBYTES], uint32_t tensor, uint64_t round,
                        int from, int to)
{
	static const uint8_t label[] = "ragg secagg share";
	uint8_t head[20];
	put_le(head, tensor);
	put_le(head + 4, round);
	put_le(head + 12, (uint32_t)from | (uint64_t)(uint32_t)to << 32);
	crypto_generichash_state h;
	crypto_generichash_init(&h, NULL, 0, crypto_box_NONCEBYTES);
	crypto_generichash_update(&h, label, sizeof(label));
	crypto_generichash_update(&h, head, sizeof(head));
	crypto_generichash_final(&h, nonce, crypto_box_NONCEBYTES);
}

/* The recovery state of t for m workers (allocated on first use). */
static struct ragg__sa_recover *dr_of(struct ragg_tensor *t, int m)
{
	struct ragg__sa_tensor *sa = t->sa;
	struct ragg__sa_recover *d = sa->dr;
	if (d)
		return d->m == m ? d : NULL;
	size_t mm = (size_t)m * (size_t)m;
	if (!(d = calloc(1, sizeof(*d))))
		return NULL;
	d->m = m;
	d->sh = calloc(2 * (size_t)m, SEED);
	d->sh_round = calloc(2 * (size_t)m, sizeof(uint64_t));
	d->rseed = calloc((size_t)m, SEED);
	d->in_u = calloc((size_t)m, 1);
	d->ended = calloc((size_t)m, 1);
	d->masks = calloc(mm, 1);
	d->relayed = calloc((size_t)m, sizeof(int));
	d->relayed_round = calloc((size_t)m, sizeof(uint64_t));
	d->bsh = calloc(mm, SEED);
	d->bhave = calloc(mm, 1);
	d->pseed = calloc(mm, SEED);
	d->phave = calloc(mm, 1);
	d->self_out = calloc(2 * (size_t)m, SEED);
	d->rec_out = calloc(2 * (size_t)m, sizeof(*d->rec_out));
	d->pair_out = calloc(2 * mm, SEED);
	d->sign_out = calloc(2 * mm, sizeof(int));
	sa->dr = d;
	if (!d->sh || !d->sh_round || !d->rseed || !d->in_u || !d->ended || !d->masks ||
	    !d->relayed || !d->relayed_round || !d->bsh || !d->bhave || !d->pseed || !d->phave ||
	    !d->self_out || !d->rec_out || !d->pair_out || !d->sign_out) {
		ragg__sa_recover_free(t);
		return NULL;
	}
	for (int p = 0; p < 2; p++) {
		sa->um[p].self = d->self_out + (size_t)p * (size_t)m;
		sa->um[p].rec = d->rec_out + (size_t)p * (size_t)m;
		sa->um[p].pair = d->pair_out + (size_t)p * mm;
		sa->um[p].sign = d->sign_out + (size_t)p * mm;
	}
	return d;
}

void ragg__sa_recover_free(struct ragg_tensor *t)
{
	struct ragg__sa_tensor *sa = t->sa;
	struct ragg__sa_recover *d = sa ? sa->dr : NULL;
	if (!d)
		return;
	size_t mm = (size_t)d->m * (size_t)d->m;
	if (d->sh)
		sodium_memzero(d->sh, 2 * (size_t)d->m * SEED);
	if (d->bsh)
		sodium_memzero(d->bsh, mm * SEED);
	if (d->rseed)
		sodium_memzero(d->rseed, (size_t)d->m * SEED);
	sodium_memzero(d->self, sizeof(d->self));
	free(d->sh);
	free(d->sh_round);
	free(d->rseed);
	free(d->in_u);
	free(d->ended);
	free(d->masks);
	free(d->relayed);
	free(d->relayed_round);
	free(d->bsh);
	free(d->bhave);
	free(d->pseed);
	free(d->phave);
	free(d->self_out);
	free(d->rec_out);
	free(d->pair_out);
	free(d->sign_out);
	free(d);
	sa->dr = NULL;
	memset(sa->um, 0, sizeof(sa->um));
}

int ragg__sa_recover_keys(struct ragg_ctx *ctx)
{
	struct ragg__sa_ctx *s = ctx->sa;
	s->threshold = ragg__sa_threshold(ctx, s->m);
	if (s->m > 255 || s->threshold < 2 || s->threshold > s->m) {
		ragg__error("secure aggregation with RAGG_ON_WORKER_LOSS=continue: threshold %d for "
		            "%d workers (needs 2 <= RAGG_SECAGG_THRESHOLD <= workers of the agent <= "
		            "255)",
		            s->threshold, s->m);
		return RAGG_ERR_CONFIG;
	}
	if (!(s->boxk = calloc((size_t)s->m, sizeof(*s->boxk))))
		return -ENOMEM;
	for (int j = 0; j < s->m; j++)
		if (j != s->me && crypto_box_beforenm(s->boxk[j], s->pks[j], s->sk) != 0) {
			ragg__error("secure aggregation: worker %d's key is a low-order point; the "
			            "round is refused",
			            s->ranks[j]);
			return RAGG_ERR_AUTH;
		}
	return 0;
}

int ragg__sa_recover_seeds(struct ragg_tensor *t, const uint8_t (**seeds)[SEED])
{
	struct ragg__sa_ctx *s = t->ctx->sa;
	struct ragg__sa_recover *d = dr_of(t, s->m);
	if (!d)
		return -ENOMEM;
	for (int j = 0; j < s->m; j++)
		if (s->masks[j])
			ragg__sa_round_seed(d->rseed[j], s->pair[j], (uint32_t)t->id, t->round);
	*seeds = (const uint8_t(*)[SEED])d->rseed;
	return 0;
}

int ragg__sa_recover_share(struct ragg_tensor *t, int parity, const uint8_t *self)
{
	struct ragg_ctx *ctx = t->ctx;
	struct ragg__sa_ctx *s = ctx->sa;
	struct ragg__sa_recover *d = dr_of(t, s->m);
	struct ragg__peer *agent = &ctx->peers[0];
	if (!d)
		return -ENOMEM;
	d->t = s->threshold;
	uint8_t *shares = malloc((size_t)s->m * SEED);
	if (!shares)
		return -ENOMEM;
	int rc = ragg__shamir_split(shares, self, SEED, d->t, s->m);
	if (!rc)
		rc = ragg__queue_reserve(agent, (uint32_t)s->m);
	memcpy(d->self[parity], self, SEED);
	d->pushed[parity] = t->round;
	for (int k = 0; k < s->m && !rc; k++) {
		if (k == s->me) {
			memcpy(d->sh[(size_t)parity * (size_t)s->m + (size_t)k], shares + (size_t)k * SEED,
			       SEED);
			d->sh_round[(size_t)parity * (size_t)s->m + (size_t)k] = t->round + 1;
			continue;
		}
		uint8_t nonce[crypto_box_NONCEBYTES], c[BOX];
		share_nonce(nonce, (uint32_t)t->id, t->round, ctx->opts.rank, s->ranks[k]);
		crypto_box_easy_afternm(c, shares + (size_t)k * SEED, SEED, nonce, s->boxk[k]);
		struct ragg__msg m = { .type = RAGG_MSG_SA_RECOVER,
			               .tensor = (uint8_t)t->id,
			               .status = status_of(RAGG_SA_R_SHARE, k),
			               .count = get_le(c + SEED),
			               .chunk_bytes = get_le(c + SEED + 8),
			               .name_hash = t->round };
		m.rdesc.len = SEED;
		memcpy(m.rdesc.blob, c, SEED);
		rc = ragg__post_msg(agent, &m);
	}
	sodium_memzero(shares, (size_t)s->m * SEED);
	free(shares);
	return rc;
}

/* Worker: a share relayed from worker `from`. */
static void worker_share(struct ragg_ctx *ctx, struct ragg_tensor *t, const struct ragg__msg *m)
{
	struct ragg__sa_ctx *s = ctx->sa;
	struct ragg__sa_recover *d = dr_of(t, s->m);
	int from = who_of(m);
	if (!d) {
		ragg__fail_job(ctx, -ENOMEM);
		return;
	}
	uint8_t nonce[crypto_box_NONCEBYTES], c[BOX], plain[SEED];
	memcpy(c, m->rdesc.blob, SEED);
	put_le(c + SEED, m->count);
	put_le(c + SEED + 8, m->chunk_bytes);
	share_nonce(nonce, (uint32_t)t->id, m->name_hash, s->ranks[from], ctx->opts.rank);
	if (crypto_box_open_easy_afternm(plain, c, BOX, nonce, s->boxk[from]) != 0) {
		ragg__error("secure aggregation: the share of worker %d for round %llu of tensor "
		            "%d that agent %d relayed does not open (forged or corrupted); the "
		            "round is refused",
		            s->ranks[from], (unsigned long long)m->name_hash, t->id, ctx->peers[0].rank);
		ragg__fail_job(ctx, RAGG_ERR_AUTH);
		return;
	}
	size_t row = (size_t)(m->name_hash & 1) * (size_t)s->m + (size_t)from;
	memcpy(d->sh[row], plain, SEED);
	d->sh_round[row] = m->name_hash + 1;
	sodium_memzero(plain, sizeof(plain));
}

/* Worker: the agent asks for our part of round r's unmasking. */
static void worker_unmask(struct ragg_ctx *ctx, struct ragg_tensor *t, const struct ragg__msg *m)
{
	struct ragg__sa_ctx *s = ctx->sa;
	struct ragg__sa_recover *d = dr_of(t, s->m);
	struct ragg__peer *agent = &ctx->peers[0];
	uint64_t r = m->name_hash;
	int parity = (int)(r & 1);
	if (!d) {
		ragg__fail_job(ctx, -ENOMEM);
		return;
	}
	bool in_u[256] = { false };
	int nu = 0;
	for (int j = 0; j < s->m; j++)
		if ((in_u[j] = m->rdesc.blob[j / 8] >> (j % 8) & 1))
			nu++;
	/* Once per round, only while we are in U, only for a round we
	 * pushed, and never for fewer than t: else the agent could learn a
	 * worker's self seed and its pairwise masks both. */
	if (r + 1 <= d->answered || d->pushed[parity] != r || !in_u[s->me] || nu < s->threshold ||
	    m->count != (uint64_t)s->m) {
		ragg__error("secure aggregation: agent %d asked again, out of turn or with fewer "
		            "than %d workers to unmask round %llu of tensor %d; refused",
		            agent->rank, s->threshold, (unsigned long long)r, t->id);
		ragg__fail_job(ctx, RAGG_ERR_PROTO);
		return;
	}
	d->answered = r + 1;
	/* Testing only: lost right after the request, before any answer. */
	if (ragg__opt_long(&ctx->opts, "RAGG_SECAGG_TEST_EXIT_UNMASK") == (long)r) {
		ragg__warn("RAGG_SECAGG_TEST_EXIT_UNMASK: worker %d exits on the request to "
		           "unmask round %llu of tensor %d",
		           ctx->opts.rank, (unsigned long long)r, t->id);
		_exit(0);
	}
	if (ragg__queue_reserve(agent, (uint32_t)s->m + 1)) {
		ragg__fail_job(ctx, -ENOMEM);
		return;
	}
	for (int j = 0; j < s->m; j++) {
		struct ragg__msg a = { .type = RAGG_MSG_SA_RECOVER,
			               .tensor = (uint8_t)t->id,
			               .name_hash = r };
		a.rdesc.len = SEED;
		size_t row = (size_t)parity * (size_t)s->m + (size_t)j;
		if (in_u[j] && d->sh_round[row] == r + 1) {
			a.status = status_of(RAGG_SA_R_BSHARE, j);
			memcpy(a.rdesc.blob, d->sh[row], SEED);
		} else if (!in_u[j] && s->masks[j]) {
			a.status = status_of(RAGG_SA_R_PAIR, j);
			ragg__sa_round_seed(a.rdesc.blob, s->pair[j], (uint32_t)t->id, r);
		} else {
			continue;
		}
		if (ragg__post_msg(agent, &a))
			return;
	}
	struct ragg__msg e = { .type = RAGG_MSG_SA_RECOVER,
		               .tensor = (uint8_t)t->id,
		               .status = status_of(RAGG_SA_R_END, 0),
		               .name_hash = r };
	ragg__post_msg(agent, &e);
}

void ragg__sa_recover_worker_msg(struct ragg_ctx *ctx, struct ragg__peer *p,
                                 const struct ragg__msg *m)
{
	struct ragg__sa_ctx *s = ctx->sa;
	struct ragg_tensor *t = m->tensor < ctx->ntensors ? ctx->tensors[m->tensor] : NULL;
	int kind = kind_of(m);
	if (!t || !t->sa || !s || !s->ready || !s->boxk || who_of(m) >= s->m ||
	    m->rdesc.len != SEED || (kind == RAGG_SA_R_SHARE && who_of(m) == s->me) ||
	    (kind != RAGG_SA_R_SHARE && kind != RAGG_SA_R_UNMASK)) {
		ragg__error("agent %d sent a secure aggregation recovery message out of turn or "
		            "malformed",
		            p->rank);
		ragg__fail_job(ctx, RAGG_ERR_PROTO);
		return;
	}
	if (kind == RAGG_SA_R_SHARE)
		worker_share(ctx, t, m);
	else
		worker_unmask(ctx, t, m);
}

/* Agent: every worker of U answered, or enough did: the round's tables. */
static bool agent_complete(struct ragg_ctx *ctx, struct ragg_tensor *t)
{
	struct ragg__sa_tensor *sa = t->sa;
	struct ragg__sa_recover *d = sa->dr;
	int m = d->m, parity = d->xparity;
	struct ragg__sa_unmask *um = &sa->um[parity];
	/* Members of U lost during the exchange answer no more: the others'
	 * answers must do (their contributions stay in the sum). */
	int nu = 0, answered = 0, waiting = 0, lost = 0, first_lost = -1;
	for (int k = 0; k < m; k++) {
		if (!d->in_u[k])
			continue;
		nu++;
		if (d->ended[k]) {
			answered++;
		} else if (ctx->peers[k].left) {
			if (!lost++)
				first_lost = k;
		} else {
			waiting++;
		}
	}
	if (answered + waiting < d->t) {
		ragg__error("secure aggregation: %d of the %d workers of U can answer the unmasking "
		            "of round %llu of tensor %d, fewer than the threshold %d "
		            "(RAGG_SECAGG_THRESHOLD): %d of U lost while it was under way, worker "
		            "%d first; the round cannot be unmasked",
		            answered + waiting, nu, (unsigned long long)d->xround, t->id, d->t, lost,
		            ctx->peers[first_lost].rank);
		ctx->lost_worker = ctx->peers[first_lost].rank + 1;
		ragg__fail_job(ctx, RAGG_ERR_PEER_LOST);
		return false;
	}
	if (waiting)
		return false;
	/* Every pair of a member of U with a worker out of U that masks. */
	for (int k = 0; k < m; k++)
		for (int j = 0; j < m; j++)
			if (d->in_u[k] && !d->in_u[j] && d->masks[k * m + j] &&
			    !d->phave[k * m + j]) {
				bool gone = ctx->peers[k].left;
				ragg__error("secure aggregation: worker %d %s its masks with lost "
				            "worker %d for round %llu of tensor %d; the round cannot "
				            "be unmasked",
				            ctx->peers[k].rank,
				            gone ? "was lost while the round was being unmasked, "
				                   "before it revealed"
				                 : "did not reveal",
				            ctx->peers[j].rank, (unsigned long long)d->xround, t->id);
				if (gone)
					ctx->lost_worker = ctx->peers[k].rank + 1;
				ragg__fail_job(ctx, gone ? RAGG_ERR_PEER_LOST : RAGG_ERR_PROTO);
				return false;
			}
	for (int j = 0; j < m; j++) {
		if (!d->in_u[j])
			continue;
		int n = 0;
		for (int k = 0; k < m; k++)
			n += d->bhave[j * m + k];
		if (n < d->t) {
			ragg__error("secure aggregation: %d shares of worker %d's self mask for "
			            "round %llu of tensor %d, fewer than the threshold %d; the "
			            "round cannot be unmasked",
			            n, ctx->peers[j].rank, (unsigned long long)d->xround, t->id,
			            d->t);
			ragg__fail_job(ctx, RAGG_ERR_PROTO);
			return false;
		}
	}
	/* b_j from t shares of it, for every j of U, in input order. */
	um->nself = 0;
	um->npair = 0;
	for (int j = 0; j < m; j++) {
		if (!d->in_u[j])
			continue;
		const uint8_t *rows[255];
		uint8_t xs[255];
		int n = 0;
		for (int k = 0; k < m && n < d->t; k++)
			if (d->bhave[j * m + k]) {
				rows[n] = d->bsh[j * m + k];
				xs[n++] = (uint8_t)(k + 1);
			}
		if (ragg__shamir_combine(um->self[um->nself], rows, xs, d->t, SEED)) {
			ragg__fail_job(ctx, RAGG_ERR_PROTO);
			return false;
		}
		um->rec[um->nself++] = sa->slot[j] + ragg__plan_worker_sa_off(sa->plan, parity);
	}
	/* Worker k added +PRG when j > k, -PRG when j < k: taken off with
	 * the other sign. */
	for (int k = 0; k < m; k++)
		for (int j = 0; j < m; j++)
			if (d->in_u[k] && !d->in_u[j] && d->masks[k * m + j]) {
				memcpy(um->pair[um->npair], d->pseed[k * m + j], SEED);
				um->sign[um->npair++] = j > k ? -1 : 1;
			}
	um->round = d->xround;
	um->on = true;
	sodium_memzero(d->bsh, (size_t)m * (size_t)m * SEED);
	d->xstate = X_DONE;
	return true;
}

/* Agent: ask U (every worker still in the group) to unmask the round,
 * once every share of theirs is relayed. */
static bool agent_ask(struct ragg_ctx *ctx, struct ragg_tensor *t)
{
	struct ragg__sa_recover *d = t->sa->dr;
	int m = d->m, nu = 0;
	for (int j = 0; j < m; j++) {
		d->in_u[j] = !ctx->peers[j].left;
		if (!d->in_u[j])
			continue;
		nu++;
		if (d->relayed_round[j] != d->xround + 1 || d->relayed[j] < m - 1)
			return false; /* its shares are still on their way */
	}
	if (nu < d->t) {
		ragg__error("secure aggregation: %d workers of agent %d remain for round %llu of "
		            "tensor %d, fewer than the threshold %d (RAGG_SECAGG_THRESHOLD): "
		            "the round cannot be unmasked",
		            nu, ctx->opts.rank, (unsigned long long)d->xround, t->id, d->t);
		for (int j = 0; j < m; j++)
			if (!d->in_u[j]) {
				ctx->lost_worker = ctx->peers[j].rank + 1;
				break;
			}
		ragg__fail_job(ctx, RAGG_ERR_PEER_LOST);
		return false;
	}
	struct ragg__msg u = { .type = RAGG_MSG_SA_RECOVER,
		               .tensor = (uint8_t)t->id,
		               .status = status_of(RAGG_SA_R_UNMASK, 0),
		               .count = (uint64_t)m,
		               .name_hash = d->xround };
	u.rdesc.len = SEED;
	for (int j = 0; j < m; j++)
		if (d->in_u[j])
			u.rdesc.blob[j / 8] |= (uint8_t)(1u << (j % 8));
	memset(d->ended, 0, (unsigned)m);
	memset(d->bhave, 0, (size_t)(unsigned)m * (unsigned)m);
	memset(d->phave, 0, (size_t)(unsigned)m * (unsigned)m);
	d->xstate = X_ASKED;
	/* Testing only: ask a second time, U's first member said lost (a
	 * worker must refuse, or the agent would learn its self seed and
	 * its pairwise masks both). */
	bool reask = ragg__opt_long(&ctx->opts, "RAGG_SECAGG_TEST_REASK") == 1;
	for (int j = 0; j < m; j++) {
		if (!d->in_u[j])
			continue;
		if (ragg__queue_reserve(&ctx->peers[j], 2) || ragg__post_msg(&ctx->peers[j], &u)) {
			ragg__fail_job(ctx, -ENOMEM);
			return false;
		}
	}
	int first = 0;
	while (reask && !d->in_u[first])
		first++;
	if (reask) {
		u.rdesc.blob[first / 8] &= (uint8_t) ~(1u << (first % 8));
		for (int k = first + 1; k < m; k++)
			if (d->in_u[k] && ragg__post_msg(&ctx->peers[k], &u))
				return false;
	}
	return true;
}

bool ragg__sa_recover_hold(struct ragg_ctx *ctx, struct ragg_tensor *t, int parity)
{
	struct ragg__sa_tensor *sa = t->sa;
	if (!sa || !ragg__sa_recover_on(ctx) || t->round == 0)
		return false;
	struct ragg__sa_recover *d = dr_of(t, ctx->nworkers);
	if (!d) {
		ragg__fail_job(ctx, -ENOMEM);
		return true;
	}
	if (d->xstate == X_DONE && d->xround == t->round) {
		d->xstate = X_NONE;
		return false;
	}
	if (d->xstate == X_ASKED && d->xround == t->round) {
		/* A member of U was lost before the round was unmasked: its
		 * contribution stays in (U is not asked again), the others'
		 * answers may now be all there is. */
		if (!agent_complete(ctx, t))
			return true;
		ragg__debug("secure aggregation: round %llu of tensor %d unmasked without the "
		            "members of U lost meanwhile",
		            (unsigned long long)d->xround, t->id);
		d->xstate = X_NONE;
		return false;
	}
	/* A new round: who masks with whom, and the threshold. */
	if (d->xround != t->round || d->xstate == X_NONE) {
		long k = ragg__opt_long(&ctx->opts, "RAGG_SECAGG_NEIGHBOURS");
		int nb[256];
		d->t = ragg__sa_threshold(ctx, d->m);
		memset(d->masks, 0, (size_t)d->m * (size_t)d->m);
		for (int i = 0; i < d->m && d->m <= 256; i++) {
			int nn = ragg__sa_neighbours(d->m, k > 0 ? (int)k : d->m, i, nb);
			for (int q = 0; q < nn; q++)
				d->masks[i * d->m + nb[q]] = true;
		}
		sa->um[parity].on = false;
		d->xround = t->round;
		d->xparity = parity;
		d->xstate = X_SHARES;
	}
	if (d->xstate == X_SHARES)
		agent_ask(ctx, t);
	return true;
}

void ragg__sa_recover_agent_msg(struct ragg_ctx *ctx, struct ragg__peer *p,
                                const struct ragg__msg *m)
{
	struct ragg_tensor *t = m->tensor < ctx->ntensors ? ctx->tensors[m->tensor] : NULL;
	int kind = kind_of(m), who = who_of(m), i = p->index;
	struct ragg__sa_recover *d =
	    t && t->sa && ragg__sa_recover_on(ctx) ? dr_of(t, ctx->nworkers) : NULL;
	if (!d || who >= d->m ||
	    (kind == RAGG_SA_R_SHARE ? who == i || m->rdesc.len != SEED
	                             : kind < RAGG_SA_R_BSHARE || kind > RAGG_SA_R_END ||
	                                   d->xstate != X_ASKED || m->name_hash != d->xround ||
	                                   !d->in_u[i] || d->ended[i])) {
		ragg__error("worker %d sent a secure aggregation recovery message out of turn or "
		            "malformed",
		            p->rank);
		ragg__fail_job(ctx, RAGG_ERR_PROTO);
		return;
	}
	switch (kind) {
	case RAGG_SA_R_SHARE: {
		if (d->relayed_round[i] != m->name_hash + 1) {
			d->relayed_round[i] = m->name_hash + 1;
			d->relayed[i] = 0;
		}
		d->relayed[i]++;
		struct ragg__peer *to = &ctx->peers[who];
		if (!to->left && to->connected) {
			struct ragg__msg f = *m;
			f.status = status_of(RAGG_SA_R_SHARE, i);
			if (ragg__queue_reserve(to, 1) || ragg__post_msg(to, &f))
				return;
		}
		if (d->xstate == X_SHARES && d->xround == m->name_hash)
			agent_ask(ctx, t);
		return;
	}
	case RAGG_SA_R_BSHARE:
		memcpy(d->bsh[who * d->m + i], m->rdesc.blob, SEED);
		d->bhave[who * d->m + i] = true;
		break;
	case RAGG_SA_R_PAIR:
		memcpy(d->pseed[i * d->m + who], m->rdesc.blob, SEED);
		d->phave[i * d->m + who] = true;
		break;
	default:
		d->ended[i] = true;
		break;
	}
	if (d->xstate == X_ASKED && agent_complete(ctx, t)) {
		ragg__debug("secure aggregation: round %llu of tensor %d unmasked",
		            (unsigned long long)d->xround, t->id);
		ragg__elastic_start_round(ctx, t, d->xparity);
	}
}

bool ragg__sa_recover_counted(const struct ragg_tensor *t, int parity, int worker)
{
	const struct ragg__sa_tensor *sa = t->sa;
	const struct ragg__sa_recover *d = sa ? sa->dr : NULL;
	return d && sa->um[parity].on && sa->um[parity].round == t->round && worker < d->m &&
	       d->in_u[worker];
}

void ragg__sa_recover_lost(struct ragg_ctx *ctx, const struct ragg__peer *p)
{
	for (int k = 0; k < ctx->ntensors; k++) {
		struct ragg_tensor *t = ctx->tensors[k];
		struct ragg__agent_tensor *at = t->agent;
		if (!t->sa || !at || !at->ready || t->round == 0)
			continue;
		int parity = (int)(t->round & 1);
		const struct ragg__sa_recover *d = t->sa->dr;
		if (d && d->xstate == X_ASKED && d->xround == t->round && p->index < d->m &&
		    d->in_u[p->index]) {
			ragg__warn("secure aggregation: worker %d lost while round %llu of tensor %d "
			           "was being unmasked, its masked contribution counted in: the "
			           "round counts it, its self mask rebuilt from the others' shares",
			           p->rank, (unsigned long long)t->round, t->id);
			continue;
		}
		size_t landed = 0;
		for (uint32_t c = 0; c < t->plan.nchunks; c++)
			landed += ragg__seen_has(&at->seen_grads, parity, c, p->index);
		ragg__warn("secure aggregation: worker %d lost %s its masked contribution to round "
		           "%llu of tensor %d landed (%zu of %zu chunks): the round counts the "
		           "others only",
		           p->rank, landed == t->plan.nchunks ? "after" : "before",
		           (unsigned long long)t->round, t->id, landed, (size_t)t->plan.nchunks);
	}
}
