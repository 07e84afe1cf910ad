/* Frame header and region descriptor encoding; see wire.h for the layout. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "wire.h"

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

void ragg__tcp_frame_encode(const struct ragg__tcp_frame *f, uint8_t hdr[RAGG__TCP_HDR_SIZE])
{
	put32(hdr + 0, RAGG__TCP_MAGIC);
	hdr[4] = RAGG__TCP_VERSION;
	hdr[5] = f->type;
	put16(hdr + 6, f->flags);
	put32(hdr + 8, f->imm);
	put32(hdr + 12, f->region);
	put64(hdr + 16, f->key);
	put64(hdr + 24, f->offset);
	put64(hdr + 32, f->length);
}

/* Largest payload each type may carry. */
static uint64_t max_length(uint8_t type)
{
	switch (type) {
	case RAGG__TCP_HELLO:
	case RAGG__TCP_ACCEPT:
		return RAGG_TP_PRIV_MAX;
	case RAGG__TCP_WRITE:
		return RAGG__TCP_MAX_WRITE;
	case RAGG__TCP_MSG:
		return RAGG_TP_MSG_MAX;
	default:
		return 0;
	}
}

int ragg__tcp_frame_decode(const uint8_t hdr[RAGG__TCP_HDR_SIZE], struct ragg__tcp_frame *f)
{
	struct ragg__tcp_frame d = {
		.version = hdr[4],
		.type = hdr[5],
		.flags = get16(hdr + 6),
		.imm = get32(hdr + 8),
		.region = get32(hdr + 12),
		.key = get64(hdr + 16),
		.offset = get64(hdr + 24),
		.length = get64(hdr + 32),
	};

	if (get32(hdr) != RAGG__TCP_MAGIC)
		return RAGG_ERR_PROTO;
	if (d.version != RAGG__TCP_VERSION) {
		f->version = d.version;
		return RAGG_ERR_VERSION;
	}
	if (d.type < RAGG__TCP_HELLO || d.type > RAGG__TCP_ERR)
		return RAGG_ERR_PROTO;
	if (d.length > max_length(d.type))
		return RAGG_ERR_PROTO;
	if (d.type == RAGG__TCP_WRITE) {
		if (d.flags & ~RAGG__TCP_F_IMM)
			return RAGG_ERR_PROTO;
	} else {
		if (d.flags || d.region || d.key || d.offset)
			return RAGG_ERR_PROTO;
		/* ERR carries a status: a negative errno or a ragg code, no
		 * more. */
		if (d.type == RAGG__TCP_ERR && ((int32_t)d.imm >= 0 || (int32_t)d.imm < -4095))
			return RAGG_ERR_PROTO;
		if (d.type != RAGG__TCP_ERR && d.imm)
			return RAGG_ERR_PROTO;
	}
	*f = d;
	return 0;
}

int ragg__tcp_frame_precheck(const uint8_t *hdr, size_t got)
{
	uint8_t magic[4];
	put32(magic, RAGG__TCP_MAGIC);
	if (memcmp(hdr, magic, got < 4 ? got : 4) != 0)
		return RAGG_ERR_PROTO;
	if (got > 4 && hdr[4] != RAGG__TCP_VERSION)
		return RAGG_ERR_VERSION;
	return 0;
}

void ragg__tcp_rdesc_pack(const struct ragg__tcp_rdesc *d, struct ragg_tp_rdesc *out)
{
	memset(out, 0, sizeof(*out));
	out->len = RAGG__TCP_RDESC_LEN;
	out->blob[0] = RAGG__TCP_RDESC_FORMAT;
	put32(out->blob + 1, d->region);
	put64(out->blob + 5, d->key);
	put64(out->blob + 13, d->length);
}

int ragg__tcp_rdesc_unpack(const struct ragg_tp_rdesc *in, struct ragg__tcp_rdesc *d)
{
	if (!in || in->len != RAGG__TCP_RDESC_LEN || in->blob[0] != RAGG__TCP_RDESC_FORMAT)
		return -EINVAL;
	d->region = get32(in->blob + 1);
	d->key = get64(in->blob + 5);
	d->length = get64(in->blob + 13);
	return 0;
}
