/*
 * Secure aggregation's reducing stage (privacy/sa_job.h): the workers'
 * masked words are summed modulo 2^32, each worker's self mask of the round
 * is removed (its seed is in the record at the end of its slot), and the
 * sum is decoded to floats in place; N, the sum of the weights, is
 * unmasked the same way from the records. The pairwise masks cancel in the
 * sum. Round 0 (the declaration: worker 0's initial parameters, not data)
 * is summed as floats. With dropout recovery (privacy/sa_recover.h) the
 * self seeds come from the round's unmasking instead of the records, and
 * the survivors' masks with lost workers are taken off too.
 */
#include <ragg/ragg.h>

#include "engine/engine.h"
#include "plan.h"
#include "privacy/sa_job.h"
#include "stages/stage.h"

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* With dropout recovery (privacy/sa_recover.h): the self seeds rebuilt
 * from shares, and the masks the inputs share with lost workers. */
static void unmask_recovered(struct ragg__stage_ctx *c, const struct ragg__sa_unmask *um,
                             const struct ragg__sa_pos *pos)
{
	const struct ragg__sa_tensor *sa = c->arg;
	uint32_t *acc = (uint32_t *)c->out;
	uint64_t total = 0;
	if (um->round != c->round || um->nself != c->nin) {
		c->rc = RAGG_ERR_PROTO;
		return;
	}
	ragg__sa_sum(acc, (const uint32_t *const *)c->in, c->nin, c->n);
	for (size_t off = 0; off < c->n; off += RAGG_SA_FUSE_WORDS) {
		size_t len = c->n - off < RAGG_SA_FUSE_WORDS ? c->n - off : RAGG_SA_FUSE_WORDS;
		for (int i = 0; i < um->nself; i++)
			ragg__sa_mask_at(acc + off, len, um->self[i], pos, -1, off);
		for (int q = 0; q < um->npair; q++)
			ragg__sa_mask_at(acc + off, len, um->pair[q], pos, um->sign[q], off);
		ragg__sa_decode(c->out + off, acc + off, len, sa->scale);
	}
	for (int i = 0; i < um->nself; i++)
		total += le64(um->rec[i] + RAGG_SA_REC_WEIGHT) -
		         ragg__sa_weight_mask(um->self[i], c->tensor, c->round);
	for (int q = 0; q < um->npair; q++) {
		uint64_t k = ragg__sa_weight_mask(um->pair[q], c->tensor, c->round);
		total = um->sign[q] > 0 ? total + k : total - k;
	}
	c->total = (double)total / RAGG_SA_WEIGHT_SCALE;
	c->has_total = 1;
}

static void secagg_run(struct ragg__stage_ctx *c)
{
	const struct ragg__sa_tensor *sa = c->arg;
	if (c->exact) {
		c->nonfinite = c->k->sum_weighted(c->out, c->in, c->w, c->nin, c->n);
		return;
	}
	uint32_t *acc = (uint32_t *)c->out;
	struct ragg__sa_pos pos = { .tensor = c->tensor, .chunk = c->chunk, .round = c->round };
	uint64_t total = 0;
	const struct ragg__sa_unmask *um = &sa->um[c->parity];
	if (um->on) {
		unmask_recovered(c, um, &pos);
		return;
	}
	ragg__sa_sum(acc, (const uint32_t *const *)c->in, c->nin, c->n);
	/* The self masks off and the decoding a block at a time, in cache. */
	for (size_t off = 0; off < c->n; off += RAGG_SA_FUSE_WORDS) {
		size_t len = c->n - off < RAGG_SA_FUSE_WORDS ? c->n - off : RAGG_SA_FUSE_WORDS;
		for (int i = 0; i < c->nin; i++) {
			const uint8_t *rec =
			    sa->slot[i] + ragg__plan_worker_sa_off(sa->plan, c->parity);
			ragg__sa_mask_at(acc + off, len, rec + RAGG_SA_REC_SEED, &pos, -1, off);
		}
		ragg__sa_decode(c->out + off, acc + off, len, sa->scale);
	}
	for (int i = 0; i < c->nin; i++) {
		const uint8_t *rec = sa->slot[i] + ragg__plan_worker_sa_off(sa->plan, c->parity);
		total += le64(rec + RAGG_SA_REC_WEIGHT) -
		         ragg__sa_weight_mask(rec + RAGG_SA_REC_SEED, c->tensor, c->round);
	}
	c->total = (double)total / RAGG_SA_WEIGHT_SCALE;
	c->has_total = 1;
}

const struct ragg__stage ragg__stage_secagg = {
	.name = "secagg",
	.flags = RAGG_STAGE_IN_PLACE | RAGG_STAGE_REDUCE,
	.run = secagg_run,
};
