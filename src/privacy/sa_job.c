/* Secure aggregation in a job's rounds: keys, the worker's masked push and
 * the agent's relay (privacy/sa_job.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "agent.h"
#include "core.h"
#include "engine/engine.h"
#include "log.h"
#include "privacy/dp_job.h"
#include "privacy/sa_job.h"
#include "privacy/sa_mask.h"
#include "settings.h"
#include "stages/stage.h"

bool ragg__sa_on(const struct ragg_opts *o)
{
	return ragg__opt_long(o, "RAGG_SECAGG") == 1;
}

static void put_le(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int bytes)
{
	uint64_t v = 0;
	for (int i = 0; i < bytes; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

void ragg__sa_key_mac(const struct ragg_opts *o, int rank, const uint8_t pk[RAGG_SA_PK_BYTES],
                      uint8_t mac[16])
{
	static const uint8_t label[] = "ragg secagg key mac";
	uint8_t key[crypto_generichash_KEYBYTES], head[10];
	crypto_generichash_state h;
	/* The MAC's key: derived from the job key, for this use only. */
	crypto_generichash_init(&h, NULL, 0, sizeof(key));
	crypto_generichash_update(&h, label, sizeof(label));
	crypto_generichash_update(&h, (const uint8_t *)o->job_key, strlen(o->job_key));
	crypto_generichash_final(&h, key, sizeof(key));
	/* Over (rank, key, the job: its shape and rendezvous). */
	put_le(head, (uint32_t)rank, 4);
	put_le(head + 4, (uint16_t)o->workers, 2);
	put_le(head + 6, (uint16_t)o->agents, 2);
	put_le(head + 8, (uint16_t)o->servers, 2);
	crypto_generichash_init(&h, key, sizeof(key), 16);
	crypto_generichash_update(&h, head, sizeof(head));
	crypto_generichash_update(&h, pk, RAGG_SA_PK_BYTES);
	crypto_generichash_update(&h, (const uint8_t *)o->root, strlen(o->root));
	crypto_generichash_final(&h, mac, 16);
	sodium_memzero(key, sizeof(key));
}

static void key_msg(struct ragg__msg *m, int rank, const uint8_t *pk, const uint8_t *mac, int n)
{
	memset(m, 0, sizeof(*m));
	m->type = RAGG_MSG_SA_KEY;
	m->status = rank;
	m->count = get_le(mac, 8);
	m->chunk_bytes = get_le(mac + 8, 8);
	m->name_hash = (uint64_t)n;
	m->rdesc.len = RAGG_SA_PK_BYTES;
	memcpy(m->rdesc.blob, pk, RAGG_SA_PK_BYTES);
}

static struct ragg__sa_ctx *sa_ctx(struct ragg_ctx *ctx)
{
	if (!ctx->sa)
		ctx->sa = calloc(1, sizeof(*ctx->sa));
	return ctx->sa;
}

void ragg__sa_ctx_free(struct ragg_ctx *ctx)
{
	struct ragg__sa_ctx *s = ctx->sa;
	if (!s)
		return;
	/* A pool whose threads do not stop is left behind, not freed. */
	ragg__sa_pool_free(s->pool, ctx->opts.timeout_ms);
	free(s->ranks);
	free(s->pks);
	free(s->masks);
	if (s->pair)
		sodium_memzero(s->pair, (size_t)s->m * sizeof(*s->pair));
	free(s->pair);
	free(s->apk);
	free(s->amac);
	free(s->have);
	if (s->boxk)
		sodium_memzero(s->boxk, (size_t)s->m * sizeof(*s->boxk));
	free(s->boxk);
	sodium_memzero(s, sizeof(*s));
	free(s);
	ctx->sa = NULL;
}

/* Worker: our key pair, sent to the agent with its MAC (once). */
static int worker_keys(struct ragg_ctx *ctx)
{
	struct ragg__sa_ctx *s = ctx->sa;
	if (s)
		return 0;
	if (!(s = sa_ctx(ctx)))
		return -ENOMEM;
	uint8_t mac[16];
	struct ragg__msg m;
	ragg__sa_keypair(s->pk, s->sk);
	randombytes_buf(s->rounding, sizeof(s->rounding));
	ragg__sa_key_mac(&ctx->opts, ctx->opts.rank, s->pk, mac);
	key_msg(&m, ctx->opts.rank, s->pk, mac, 0);
	int rc = ragg__queue_reserve(&ctx->peers[0], 1);
	return rc ? rc : ragg__post_msg(&ctx->peers[0], &m);
}

int ragg__sa_tensor_init(struct ragg_ctx *ctx, ragg_tensor_t *t)
{
	const struct ragg_opts *o = &ctx->opts;
	struct ragg__plan *pl = &t->plan;
	int rc;
	if (!ragg__sa_on(o))
		return 0;
	if (pl->codec.codec || pl->wcodec.codec) {
		ragg__error("tensor \"%s\": RAGG_SECAGG=on cannot be combined with RAGG_COMPRESS or "
		            "RAGG_WORKER_COMPRESS (masked contributions are integers modulo 2^32; no codec applies)",
		            t->name);
		return RAGG_ERR_CONFIG;
	}
	if (!o->job_key[0]) {
		ragg__error("tensor \"%s\": RAGG_SECAGG=on needs RAGG_JOB_KEY (the workers "
		            "authenticate each other's keys with it)",
		            t->name);
		return RAGG_ERR_CONFIG;
	}
	long k = ragg__opt_long(o, "RAGG_SECAGG_NEIGHBOURS");
	if (k == 1 || k % 2) {
		ragg__error("tensor \"%s\": RAGG_SECAGG_NEIGHBOURS=%ld: the ring needs an even "
		            "number of neighbours, k/2 on each side (0: every other worker)",
		            t->name, k);
		return RAGG_ERR_CONFIG;
	}
	if (o->role == RAGG_ROLE_AGENT && ctx->nworkers < 2) {
		ragg__error("tensor \"%s\": RAGG_SECAGG=on needs at least 2 workers per agent "
		            "(agent %d has %d: its sum would be that worker's gradient)",
		            t->name, o->rank, ctx->nworkers);
		return RAGG_ERR_CONFIG;
	}
	if (o->role == RAGG_ROLE_AGENT && ragg__sa_recover_on(ctx)) {
		int th = ragg__sa_threshold(ctx, ctx->nworkers);
		if (th < 2 || th > ctx->nworkers || ctx->nworkers > 255) {
			ragg__error("tensor %d: RAGG_SECAGG_THRESHOLD=%d with "
			            "RAGG_ON_WORKER_LOSS=continue: needs 2 <= t <= the agent's %d "
			            "workers <= 255",
			            t->id, th, ctx->nworkers);
			return RAGG_ERR_CONFIG;
		}
	}
	struct ragg__sa_tensor *sa = calloc(1, sizeof(*sa));
	if (!sa)
		return -ENOMEM;
	t->sa = sa;
	sa->range = ragg__opt_double(o, "RAGG_SECAGG_RANGE");
	sa->plan = pl;
	pl->secagg = true;
	/* The agent cannot read masked norms: with RAGG_DP the worker clips. */
	pl->claims = false;
	if (o->role == RAGG_ROLE_AGENT) {
		sa->m = ctx->nworkers;
		sa->scale = ragg__sa_scale(sa->m, sa->range);
		if (!(sa->slot = calloc((size_t)ctx->nworkers, sizeof(*sa->slot))))
			return -ENOMEM;
		if (!sa->scale) {
			ragg__error("tensor \"%s\": RAGG_SECAGG_RANGE=%g leaves no fixed point for %d "
			            "workers",
			            t->name, sa->range, sa->m);
			return RAGG_ERR_CONFIG;
		}
	}
	if (o->role == RAGG_ROLE_WORKER) {
		const struct ragg__tp *tp = ctx->peers[0].tp;
		struct ragg_tp_rdesc unused;
		if ((rc = worker_keys(ctx)))
			return rc;
		if (posix_memalign((void **)&sa->enc, 64, pl->bytes) ||
		    posix_memalign((void **)&sa->rec, 64, 2 * RAGG_PLAN_SA_BYTES)) {
			return -ENOMEM;
		}
		memset(sa->rec, 0, 2 * RAGG_PLAN_SA_BYTES);
		if ((rc = tp->ops->mr_reg(tp->dev, sa->enc, pl->bytes, &sa->enc_mr, &unused)) ||
		    (rc = tp->ops->mr_reg(tp->dev, sa->rec, 2 * RAGG_PLAN_SA_BYTES, &sa->rec_mr,
		                          &unused)))
			return rc;
		/* A push writes the record too. */
		if ((rc = ragg__queue_reserve(&ctx->peers[0], 1)))
			return rc;
	}
	struct ragg__plan_stage st[2] = { { .stage = &ragg__stage_secagg, .arg = sa } };
	int n = 1;
	if (t->dp)
		st[n++] = (struct ragg__plan_stage){ .stage = &ragg__stage_dp_noise, .arg = t->dp };
	return ragg__plan_set_stages(pl, st, n);
}

void ragg__sa_tensor_free(ragg_tensor_t *t)
{
	struct ragg__sa_tensor *sa = t->sa;
	if (!sa)
		return;
	const struct ragg__tp *tp = t->ctx->npeers ? t->ctx->peers[0].tp : NULL;
	if (sa->enc_mr && tp)
		tp->ops->mr_dereg(sa->enc_mr);
	if (sa->rec_mr && tp)
		tp->ops->mr_dereg(sa->rec_mr);
	ragg__sa_recover_free(t);
	free(sa->enc);
	free(sa->rec);
	free(sa->slot);
	free(sa);
	t->sa = NULL;
}

static bool keys_ready(void *arg)
{
	const struct ragg_ctx *ctx = arg;
	return ctx->sa && ctx->sa->ready;
}

/* 64 bits of PRG(seed) at pos: the weight's mask. */
static uint64_t prg64(const uint8_t seed[RAGG_SA_SEED_BYTES], const struct ragg__sa_pos *pos)
{
	uint32_t w[2] = { 0, 0 };
	ragg__sa_mask(w, 2, seed, pos, 1);
	return (uint64_t)w[0] | (uint64_t)w[1] << 32;
}

uint64_t ragg__sa_weight_mask(const uint8_t seed[RAGG_SA_SEED_BYTES], uint32_t tensor,
                              uint64_t round)
{
	struct ragg__sa_pos pos = { .tensor = tensor, .chunk = UINT32_MAX, .round = round };
	return prg64(seed, &pos);
}

int ragg__sa_worker_push(ragg_tensor_t *t, const float *grad, double weight, int parity,
                         const void **src, struct ragg_tp_mr **mr)
{
	struct ragg_ctx *ctx = t->ctx;
	struct ragg__sa_tensor *sa = t->sa;
	const struct ragg__plan *pl = &t->plan;
	int rc;
	if (!(weight <= RAGG_SA_WEIGHT_MAX)) {
		ragg__error("tensor \"%s\": RAGG_SECAGG=on takes weights up to %g, not %g; nothing "
		            "was pushed",
		            t->name, RAGG_SA_WEIGHT_MAX, weight);
		return -EINVAL;
	}
	if ((rc = ragg__wait(ctx, keys_ready, ctx, "secure aggregation keys")))
		return rc;
	struct ragg__sa_ctx *s = ctx->sa;
	if (!sa->scale || sa->m != s->m) {
		sa->m = s->m;
		sa->scale = ragg__sa_scale(s->m, sa->range);
	}
	/* With RAGG_DP, w g is clipped to C in L2 norm over the tensor here
	 * (the agent cannot see it to enforce it). */
	double w = weight;
	if (t->dp) {
		const struct ragg__kernels *k = ctx->kernels ? ctx->kernels : ragg__kernels_get(NULL);
		double total = 0;
		for (size_t c = 0; c < pl->nchunks; c++) {
			double v = k->norm2(grad + c * pl->chunk_elems, ragg__plan_chunk_elems(pl, c));
			total += v * v;
		}
		total = sqrt(total) * fabs(weight);
		if (total > t->dp->clip)
			w = weight * (t->dp->clip / total);
	}
	uint8_t *rec = sa->rec + (size_t)parity * RAGG_PLAN_SA_BYTES;
	const uint8_t *self = rec + RAGG_SA_REC_SEED;
	const uint8_t(*pair)[RAGG_SA_SEED_BYTES] = (const uint8_t(*)[RAGG_SA_SEED_BYTES])s->pair;
	randombytes_buf(rec + RAGG_SA_REC_SEED, RAGG_SA_SEED_BYTES);
	/* With dropout recovery, seeds of this round only (sa_recover.h). */
	if (s->boxk && (rc = ragg__sa_recover_seeds(t, &pair)))
		return rc;
	/* A block at a time, every stream added while it is in cache, the
	 * blocks over RAGG_AGG_THREADS threads of the context's pool, while
	 * the push writes the chunks already masked (ragg__sa_worker_chunk). */
	struct ragg__sa_mask_args ma = {
		.enc = sa->enc, .grad = grad, .plan = pl, .weight = w, .range = sa->range,
		.scale = sa->scale, .rounding = s->rounding, .self = self,
		.pair = pair, .masks = s->masks,
		.m = s->m, .me = s->me, .tensor = (uint32_t)t->id, .round = t->round,
		.threads = ragg__opt_long(&ctx->opts, "RAGG_AGG_THREADS"),
	};
	if ((rc = ragg__sa_mask_start(&s->pool, &ma)))
		return rc;
	uint64_t wq = (uint64_t)llround(weight * RAGG_SA_WEIGHT_SCALE);
	wq += ragg__sa_weight_mask(self, (uint32_t)t->id, t->round);
	for (int j = 0; j < s->m; j++) {
		if (!s->masks[j])
			continue;
		uint64_t k = ragg__sa_weight_mask(pair[j], (uint32_t)t->id, t->round);
		wq = j > s->me ? wq + k : wq - k;
	}
	put_le(rec + RAGG_SA_REC_WEIGHT, wq, 8);
	/* With dropout recovery b_i travels only in shares, and the record
	 * holds zeros in its place. */
	if (s->boxk) {
		rc = ragg__sa_recover_share(t, parity, self);
		sodium_memzero(rec + RAGG_SA_REC_SEED, RAGG_SA_SEED_BYTES);
	}
	if (!rc)
		rc = ragg__post_write(&ctx->peers[0], rec, sa->rec_mr, &t->worker.agent_slot,
		                      ragg__plan_worker_sa_off(pl, parity), RAGG_PLAN_SA_BYTES, 0, 0,
		                      0);
	if (rc) {
		/* The masking still reads grad: it ends before we return. */
		int rc2 = ragg__sa_worker_masked(t);
		return rc2 == RAGG_ERR_TIMEOUT ? rc2 : rc;
	}
	*src = sa->enc;
	*mr = sa->enc_mr;
	return 0;
}

int ragg__sa_worker_chunk(struct ragg_tensor *t, size_t c)
{
	struct ragg_ctx *ctx = t->ctx;
	return ragg__sa_mask_wait_chunk(ctx->sa->pool, c, ctx->opts.timeout_ms);
}

int ragg__sa_worker_masked(struct ragg_tensor *t)
{
	struct ragg_ctx *ctx = t->ctx;
	size_t clipped = 0;
	int rc = ragg__sa_mask_end(ctx->sa->pool, ctx->opts.timeout_ms, &clipped);
	if (rc)
		return rc;
	if (clipped)
		ragg__debug("tensor \"%s\" round %llu: %zu elements clipped to +-RAGG_SECAGG_RANGE",
		            t->name, (unsigned long long)t->round, clipped);
	return 0;
}

void ragg__sa_worker_on_key(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m)
{
	struct ragg__sa_ctx *s = ctx->sa;
	long n = (long)m->name_hash;
	if (!s || s->ready || n < 2 || n > 65535 || (s->m && n != s->m) ||
	    m->rdesc.len != RAGG_SA_PK_BYTES) {
		ragg__error("agent %d sent a secure aggregation key out of turn or malformed",
		            p->rank);
		ragg__fail_job(ctx, RAGG_ERR_PROTO);
		return;
	}
	if (!s->m) {
		s->ranks = calloc((size_t)n, sizeof(*s->ranks));
		s->pks = calloc((size_t)n, sizeof(*s->pks));
		s->pair = calloc((size_t)n, sizeof(*s->pair));
		s->masks = calloc((size_t)n, sizeof(*s->masks));
		if (!s->ranks || !s->pks || !s->pair || !s->masks) {
			ragg__fail_job(ctx, -ENOMEM);
			return;
		}
		s->m = (int)n;
	}
	uint8_t mac[16], want[16];
	int rank = m->status;
	put_le(mac, m->count, 8);
	put_le(mac + 8, m->chunk_bytes, 8);
	ragg__sa_key_mac(&ctx->opts, rank, m->rdesc.blob, want);
	if (rank < 0 || crypto_verify_16(mac, want) != 0) {
		ragg__error("secure aggregation: the key agent %d relayed for worker %d does not "
		            "carry that worker's proof under RAGG_JOB_KEY (substituted or "
		            "corrupted); the round is refused",
		            p->rank, rank);
		ragg__fail_job(ctx, RAGG_ERR_AUTH);
		return;
	}
	for (int j = 0; j < s->got; j++)
		if (s->ranks[j] == rank) {
			ragg__error("agent %d relayed two keys for worker %d", p->rank, rank);
			ragg__fail_job(ctx, RAGG_ERR_PROTO);
			return;
		}
	s->ranks[s->got] = rank;
	memcpy(s->pks[s->got], m->rdesc.blob, RAGG_SA_PK_BYTES);
	if (++s->got < s->m)
		return;
	s->me = -1;
	for (int j = 0; j < s->m; j++)
		if (s->ranks[j] == ctx->opts.rank)
			s->me = j;
	if (s->me < 0 || sodium_memcmp(s->pks[s->me], s->pk, RAGG_SA_PK_BYTES) != 0) {
		ragg__error("secure aggregation: agent %d did not relay our own key for worker %d; "
		            "the round is refused",
		            p->rank, ctx->opts.rank);
		ragg__fail_job(ctx, RAGG_ERR_AUTH);
		return;
	}
	/* Our neighbours on the ring (all the others by default): the graph
	 * is symmetric, so each pair agrees whether it masks. */
	long k = ragg__opt_long(&ctx->opts, "RAGG_SECAGG_NEIGHBOURS");
	int *nb = calloc((size_t)s->m, sizeof(int));
	if (!nb) {
		ragg__fail_job(ctx, -ENOMEM);
		return;
	}
	int nn = ragg__sa_neighbours(s->m, k > 0 ? (int)k : s->m, s->me, nb);
	for (int j = 0; j < nn; j++)
		s->masks[nb[j]] = true;
	free(nb);
	for (int j = 0; j < s->m; j++) {
		if (!s->masks[j])
			continue;
		if (ragg__sa_pair_seed(s->pair[j], s->sk, s->pk, ctx->opts.rank, s->pks[j],
		                       s->ranks[j])) {
			ragg__error("secure aggregation: worker %d's key is a low-order point; the "
			            "round is refused",
			            s->ranks[j]);
			ragg__fail_job(ctx, RAGG_ERR_AUTH);
			return;
		}
	}
	int rc = ragg__sa_recover_on(ctx) ? ragg__sa_recover_keys(ctx) : 0;
	if (rc) {
		ragg__fail_job(ctx, rc);
		return;
	}
	s->ready = true;
}

void ragg__sa_agent_on_key(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m)
{
	const struct ragg_opts *o = &ctx->opts;
	struct ragg__sa_ctx *s = ragg__sa_on(o) ? sa_ctx(ctx) : NULL;
	if (!s) {
		ragg__error("worker %d sent a secure aggregation key; RAGG_SECAGG is off here",
		            p->rank);
		ragg__fail_job(ctx, RAGG_ERR_PROTO);
		return;
	}
	if (!s->have) {
		s->apk = calloc((size_t)ctx->nworkers, sizeof(*s->apk));
		s->amac = calloc((size_t)ctx->nworkers, sizeof(*s->amac));
		s->have = calloc((size_t)ctx->nworkers, sizeof(*s->have));
		if (!s->apk || !s->amac || !s->have) {
			free(s->have);
			s->have = NULL;
			ragg__fail_job(ctx, -ENOMEM);
			return;
		}
	}
	int i = p->index;
	if (s->have[i] || m->rdesc.len != RAGG_SA_PK_BYTES || m->status != p->rank) {
		ragg__error("worker %d sent a second or malformed secure aggregation key", p->rank);
		ragg__fail_job(ctx, RAGG_ERR_PROTO);
		return;
	}
	s->have[i] = true;
	memcpy(s->apk[i], m->rdesc.blob, RAGG_SA_PK_BYTES);
	put_le(s->amac[i], m->count, 8);
	put_le(s->amac[i] + 8, m->chunk_bytes, 8);
	/* With fewer than 2 workers nothing is relayed: the agent refuses
	 * the tensors (ragg__sa_tensor_init). */
	if (++s->nhave < ctx->nworkers || ctx->nworkers < 2)
		return;
	/* Every key is in: each worker gets all of them, in rank order. */
	long swap = ragg__opt_long(o, "RAGG_SECAGG_TEST_SWAP");
	uint8_t fake_pk[RAGG_SA_PK_BYTES], fake_sk[RAGG_SA_SK_BYTES];
	ragg__sa_keypair(fake_pk, fake_sk);
	sodium_memzero(fake_sk, sizeof(fake_sk));
	for (int q = 0; q < ctx->nworkers; q++) {
		struct ragg__peer *w = &ctx->peers[q];
		if (ragg__queue_reserve(w, (uint32_t)ctx->nworkers)) {
			ragg__fail_job(ctx, -ENOMEM);
			return;
		}
		for (int j = 0; j < ctx->nworkers; j++) {
			struct ragg__msg k;
			int rank = ctx->peers[j].rank;
			key_msg(&k, rank, rank == swap ? fake_pk : s->apk[j], s->amac[j],
			        ctx->nworkers);
			if (ragg__post_msg(w, &k))
				return;
		}
	}
}

void ragg__sa_agent_landed(ragg_tensor_t *t, int worker, const void *slot)
{
	if (t->sa->slot[worker] != slot)
		t->sa->slot[worker] = slot;
}

void ragg__sa_test_dump(struct ragg_ctx *ctx, ragg_tensor_t *t, int rank, const void *data)
{
	const char *prefix = ragg__opt_get(&ctx->opts, "RAGG_TEST_SLOT_DUMP");
	char path[512];
	if (!prefix || !*prefix || !data)
		return;
	snprintf(path, sizeof(path), "%s.w%d.r%llu", prefix, rank, (unsigned long long)t->round);
	FILE *f = fopen(path, "wb");
	if (!f) {
		ragg__warn("RAGG_TEST_SLOT_DUMP: cannot write %s", path);
		return;
	}
	size_t len = ragg__plan_chunk_len(&t->plan, 0);
	if (fwrite(data, 1, len, f) != len)
		ragg__warn("RAGG_TEST_SLOT_DUMP: short write to %s", path);
	fclose(f);
}
