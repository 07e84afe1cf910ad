/*
 * The codec stage (RAGG_COMPRESS, RAGG_WORKER_COMPRESS; its argument is
 * the plan): the workers' contributions arrive encoded with the worker
 * hop's codec (or as floats, RAGG_WORKER_COMPRESS=none); each is decoded
 * into the chunk's scratch, weighted, summed (decode_accumulate fuses the
 * two), and the sum is encoded into the output with the agent's own error
 * feedback for the chunk (the residual of what the server did not get),
 * or, without a push codec, the sum is the output. Round 0's broadcast is
 * exact: the plain weighted sum of plain floats.
 *
 * State per chunk: the scratch sum, then the residual, chunk_bytes each
 * (64-byte aligned). Not in place: the encoding is not the sum's floats.
 */
#include <string.h>

#include "compress/codec.h"
#include "engine/engine.h"
#include "plan.h"
#include "stages/stage.h"

#include <ragg/ragg.h>

static size_t half(size_t chunk_bytes)
{
	return (chunk_bytes + 63) / 64 * 64;
}

static size_t codec_state_bytes(size_t chunk_bytes)
{
	return 2 * half(chunk_bytes);
}

static void codec_run(struct ragg__stage_ctx *c)
{
	const struct ragg__plan *pl = c->arg;
	const struct ragg__codec_spec *spec = &pl->codec, *wspec = &pl->wcodec;
	if (c->exact) {
		c->nonfinite = c->k->sum_weighted(c->out, c->in, c->w, c->nin, c->n);
		return;
	}
	/* The chunk's share of the state: its size is that of a full chunk.
	 * Without a push codec the sum is the output. */
	float *sum = spec->codec ? c->state : c->out;
	float *resid = (float *)((char *)c->state + half(c->n * sizeof(float)));
	if (!wspec->codec) {
		/* RAGG_WORKER_COMPRESS=none: the workers' floats. */
		if (c->k->sum_weighted(sum, c->in, c->w, c->nin, c->n)) {
			c->nonfinite = 1;
			return;
		}
	} else {
		size_t wlen = ragg__codec_max_encoded_size(wspec, c->n);
		memset(sum, 0, c->n * sizeof(float));
		for (int j = 0; j < c->nin; j++) {
			int rc = ragg__codec_decode_accumulate(wspec, c->in[j], wlen, sum, c->n,
			                                       c->w[j], c->seed);
			if (rc) {
				c->rc = rc;
				return;
			}
		}
		/* A worker's encoding that decodes to a NaN or an infinity (its
		 * scale, say) would poison the residual and every later round. */
		if (ragg__first_nonfinite(sum, c->n) < c->n) {
			c->nonfinite = 1;
			return;
		}
	}
	if (!spec->codec)
		return;
	size_t len = ragg__codec_max_encoded_size(spec, c->n);
	ssize_t r = ragg__codec_encode(spec, sum, c->n, c->out, len, resid, c->seed);
	if (r < 0)
		c->rc = (int)r;
}

const struct ragg__stage ragg__stage_codec = {
	.name = "codec",
	.flags = RAGG_STAGE_REDUCE,
	.state_bytes = codec_state_bytes,
	.run = codec_run,
};
