/* The tensor plan: chunk geometry, the agent's stages and the check of
 * every landed write, decided once at declaration (see plan.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "proto.h"
#include "stages/stage.h"

#include <ragg/ragg.h>

bool ragg__plan_chunk_bytes_ok(size_t chunk_bytes)
{
	return chunk_bytes >= RAGG_PLAN_MIN_CHUNK_BYTES && chunk_bytes % sizeof(float) == 0;
}

int ragg__plan_set_stages(struct ragg__plan *pl, const struct ragg__plan_stage *stages, int n)
{
	if (n < 1 || n > RAGG_PLAN_MAX_STAGES)
		return -EINVAL;
	bool in_place = true;
	for (int i = 0; i < n; i++) {
		if (!stages[i].stage)
			return -EINVAL;
		in_place = in_place && (stages[i].stage->flags & RAGG_STAGE_IN_PLACE);
	}
	memcpy(pl->stages, stages, (size_t)n * sizeof(*stages));
	pl->nstages = n;
	pl->in_place = in_place;
	return 0;
}

int ragg__plan_set_codec(struct ragg__plan *pl, const struct ragg__codec_spec *spec)
{
	if (!spec || !spec->codec || spec->codec == &ragg__codec_none) {
		const struct ragg__plan_stage sum = { .stage = &ragg__stage_sum };
		pl->codec.codec = NULL;
		pl->stride = pl->chunk_bytes;
		pl->wcodec.codec = NULL;
		pl->wstride = pl->chunk_bytes;
		return ragg__plan_set_stages(pl, &sum, 1);
	}
	/* The largest encoding is the full chunk's (the sizes grow with n). */
	size_t enc = ragg__codec_max_encoded_size(spec, pl->chunk_elems);
	if (!enc || enc > SIZE_MAX / 4 / pl->nchunks)
		return -EINVAL;
	/* Room for the floats too (round 0), 64-byte aligned. */
	size_t stride = enc > pl->chunk_bytes ? enc : pl->chunk_bytes;
	stride = (stride + 63) / 64 * 64;
	const struct ragg__plan_stage st = { .stage = &ragg__stage_codec, .arg = pl };
	struct ragg__plan p = *pl;
	p.codec = *spec;
	p.stride = stride;
	/* The workers encode with it too, unless told otherwise. */
	p.wcodec = *spec;
	p.wstride = stride;
	int rc = ragg__plan_set_stages(&p, &st, 1);
	if (rc)
		return rc;
	*pl = p;
	return 0;
}

int ragg__plan_set_worker_codec(struct ragg__plan *pl, const struct ragg__codec_spec *spec)
{
	bool none = !spec || !spec->codec || spec->codec == &ragg__codec_none;
	size_t stride = pl->chunk_bytes;
	if (!none) {
		size_t enc = ragg__codec_max_encoded_size(spec, pl->chunk_elems);
		if (!enc || enc > SIZE_MAX / 4 / pl->nchunks)
			return -EINVAL;
		stride = enc > pl->chunk_bytes ? enc : pl->chunk_bytes;
		stride = (stride + 63) / 64 * 64;
	}
	/* Encoded workers' contributions need the codec stage to decode
	 * them, with or without a push codec. */
	if (!none || pl->codec.codec) {
		const struct ragg__plan_stage st = { .stage = &ragg__stage_codec, .arg = pl };
		int rc = ragg__plan_set_stages(pl, &st, 1);
		if (rc)
			return rc;
	}
	if (none)
		pl->wcodec.codec = NULL;
	else
		pl->wcodec = *spec;
	pl->wstride = stride;
	return 0;
}

int ragg__plan_set_pull(struct ragg__plan *pl, const struct ragg__codec_spec *spec,
                        uint64_t resync)
{
	if (!spec || !spec->codec || spec->codec == &ragg__codec_none) {
		pl->pull.codec = NULL;
		pl->pull_stride = 0;
		pl->pull_resync = 0;
		return 0;
	}
	size_t enc = ragg__codec_max_encoded_size(spec, pl->chunk_elems);
	if (!enc || enc > (SIZE_MAX / 2 - pl->bytes) / pl->nchunks)
		return -EINVAL;
	pl->pull = *spec;
	pl->pull_stride = (enc + 63) / 64 * 64;
	pl->pull_resync = resync;
	return 0;
}

int ragg__plan_init(struct ragg__plan *pl, size_t count, size_t chunk_bytes, int servers)
{
	struct ragg__plan p = { 0 };
	if (count == 0 || count > SIZE_MAX / sizeof(float) || servers < 1)
		return -EINVAL;
	if (!ragg__plan_chunk_bytes_ok(chunk_bytes))
		return RAGG_ERR_PROTO;
	p.count = count;
	p.bytes = count * sizeof(float);
	p.chunk_elems = chunk_bytes / sizeof(float);
	p.chunk_bytes = chunk_bytes;
	p.nchunks = (count + p.chunk_elems - 1) / p.chunk_elems;
	if (p.nchunks > RAGG_IMM_MAX_CHUNKS)
		return -EINVAL;
	/* Every region is laid out in whole chunks, both parities and a
	 * header: a chunk size far beyond the tensor (a peer's declaration
	 * may carry any) must not wrap those sizes around. */
	if (p.nchunks > SIZE_MAX / 4 / chunk_bytes)
		return -EINVAL;
	p.servers = servers;
	p.stride = chunk_bytes;
	p.wstride = chunk_bytes;
	const struct ragg__plan_stage sum = { .stage = &ragg__stage_sum };
	int rc = ragg__plan_set_stages(&p, &sum, 1);
	if (rc)
		return rc;
	*pl = p;
	return 0;
}

int ragg__plan_check_write(const struct ragg__expect *e, uint32_t chunk, int parity, size_t len,
                           const char **why)
{
	const struct ragg__plan *pl = e->plan;
	const char *bad = NULL;
	if (!pl)
		bad = "tensor";
	else if (!e->sender_ok)
		bad = "sender";
	else if (chunk >= pl->nchunks || (e->owner >= 0 && ragg__plan_owner(pl, chunk) != e->owner))
		bad = "chunk";
	else if (parity != e->parity)
		bad = "parity";
	else if (len ? len != (e->pull_coded ? ragg__plan_pull_len(pl, chunk)
	                       : e->wcoded   ? ragg__plan_wcontrib_len(pl, chunk, true)
	                                     : ragg__plan_contrib_len(pl, chunk, e->coded))
	             : e->coded || e->wcoded || e->pull_coded || !e->in_place_ok)
		bad = "length";
	else if (!e->room)
		bad = "round";
	if (!bad)
		return 0;
	*why = bad;
	return RAGG_ERR_PROTO;
}

int ragg__seen_init(struct ragg__seen *s, size_t nchunks, int senders)
{
	struct ragg__seen n = { .words = ((size_t)senders + 63) / 64, .nchunks = nchunks };
	size_t cells = (nchunks ? nchunks : 1) * (n.words ? n.words : 1);
	n.bits[0] = calloc(cells, sizeof(uint64_t));
	n.bits[1] = calloc(cells, sizeof(uint64_t));
	if (!n.bits[0] || !n.bits[1]) {
		free(n.bits[0]);
		free(n.bits[1]);
		return -ENOMEM;
	}
	*s = n;
	return 0;
}

void ragg__seen_free(struct ragg__seen *s)
{
	free(s->bits[0]);
	free(s->bits[1]);
	s->bits[0] = s->bits[1] = NULL;
}
