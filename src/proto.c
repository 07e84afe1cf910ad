#include <endian.h>
#include <string.h>

#include <sodium.h>

#include "proto.h"

static uint8_t *put16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
	return p + 2;
}
static uint8_t *put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
	return p + 4;
}
static uint8_t *put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
	return p + 8;
}
static const uint8_t *get16(const uint8_t *p, uint16_t *v)
{
	memcpy(v, p, 2);
	*v = le16toh(*v);
	return p + 2;
}
static const uint8_t *get32(const uint8_t *p, uint32_t *v)
{
	memcpy(v, p, 4);
	*v = le32toh(*v);
	return p + 4;
}
static const uint8_t *get64(const uint8_t *p, uint64_t *v)
{
	memcpy(v, p, 8);
	*v = le64toh(*v);
	return p + 8;
}

/* The bytes the proof covers: everything before it. */
static void hello_proof(const uint8_t *wire, const char *job_key, uint8_t *out)
{
	if (!job_key || !*job_key) {
		memset(out, 0, RAGG_HELLO_PROOF_BYTES);
		return;
	}
	uint8_t key[crypto_generichash_KEYBYTES];
	/* Any length of secret becomes a hash key of the right size. */
	crypto_generichash(key, sizeof(key), (const uint8_t *)job_key, strlen(job_key), NULL, 0);
	crypto_generichash(out, RAGG_HELLO_PROOF_BYTES, wire,
	                   RAGG_HELLO_WIRE_BYTES - RAGG_HELLO_PROOF_BYTES, key, sizeof(key));
	sodium_memzero(key, sizeof(key));
}

void ragg__hello_init(struct ragg__hello *h, const struct ragg_opts *o)
{
	memset(h, 0, sizeof(*h));
	h->magic = RAGG_PROTO_MAGIC;
	h->version = RAGG_PROTO_VERSION;
	h->role = (uint8_t)o->role;
	h->rank = (uint32_t)o->rank;
	h->workers = (uint16_t)o->workers;
	h->agents = (uint16_t)o->agents;
	h->servers = (uint16_t)o->servers;
	uint8_t wire[RAGG_HELLO_WIRE_BYTES];
	ragg__hello_encode(h, wire);
	hello_proof(wire, o->job_key, h->proof);
}

size_t ragg__hello_encode(const struct ragg__hello *h, uint8_t *buf)
{
	uint8_t *p = buf;
	p = put32(p, h->magic);
	p = put16(p, h->version);
	*p++ = h->role;
	*p++ = 0;
	p = put32(p, h->rank);
	p = put16(p, h->workers);
	p = put16(p, h->agents);
	p = put16(p, h->servers);
	memcpy(p, h->proof, RAGG_HELLO_PROOF_BYTES);
	p += RAGG_HELLO_PROOF_BYTES;
	return (size_t)(p - buf);
}

int ragg__hello_decode(const void *buf, size_t len, const char *job_key, struct ragg__hello *out)
{
	const uint8_t *p = buf;
	struct ragg__hello h;
	uint8_t pad, proof[RAGG_HELLO_PROOF_BYTES];

	if (len < 6)
		return RAGG_ERR_PROTO;
	p = get32(p, &h.magic);
	p = get16(p, &h.version);
	if (h.magic != RAGG_PROTO_MAGIC)
		return RAGG_ERR_PROTO;
	if (h.version != RAGG_PROTO_VERSION)
		return RAGG_ERR_VERSION;
	if (len != RAGG_HELLO_WIRE_BYTES)
		return RAGG_ERR_PROTO;
	h.role = *p++;
	pad = *p++;
	p = get32(p, &h.rank);
	p = get16(p, &h.workers);
	p = get16(p, &h.agents);
	p = get16(p, &h.servers);
	memcpy(h.proof, p, RAGG_HELLO_PROOF_BYTES);
	if (pad || h.role < RAGG_ROLE_WORKER || h.role > RAGG_ROLE_SERVER)
		return RAGG_ERR_PROTO;
	hello_proof(buf, job_key, proof);
	if (sodium_memcmp(proof, h.proof, RAGG_HELLO_PROOF_BYTES) != 0)
		return RAGG_ERR_AUTH;
	*out = h;
	return 0;
}

size_t ragg__msg_encode(const struct ragg__msg *m, uint8_t *buf)
{
	uint8_t *p = buf;
	*p++ = m->type;
	*p++ = m->tensor;
	p = put32(p, (uint32_t)m->status);
	p = put64(p, m->count);
	p = put64(p, m->chunk_bytes);
	p = put64(p, m->name_hash);
	if (m->type == RAGG_MSG_ABORT) {
		uint8_t n = m->text_len > RAGG_ABORT_REASON_MAX ? RAGG_ABORT_REASON_MAX : m->text_len;
		*p++ = n;
		if (n)
			memcpy(p, m->text, n);
		return (size_t)(p + n - buf);
	}
	*p++ = m->rdesc.len;
	memcpy(p, m->rdesc.blob, m->rdesc.len);
	p += m->rdesc.len;
	return (size_t)(p - buf);
}

int ragg__msg_decode(const void *buf, size_t len, struct ragg__msg *out)
{
	const uint8_t *p = buf;
	struct ragg__msg m;
	uint32_t status;

	memset(&m, 0, sizeof(m));
	if (len < RAGG_MSG_HEAD_BYTES)
		return RAGG_ERR_PROTO;
	m.type = *p++;
	m.tensor = *p++;
	p = get32(p, &status);
	m.status = (int32_t)status;
	p = get64(p, &m.count);
	p = get64(p, &m.chunk_bytes);
	p = get64(p, &m.name_hash);
	if (m.type == RAGG_MSG_ABORT) {
		/* The reason in place of the descriptor; the aborting role
		 * in the tensor byte. */
		m.text_len = *p++;
		if (m.text_len > RAGG_ABORT_REASON_MAX ||
		    len != (size_t)(p - (const uint8_t *)buf) + m.text_len ||
		    m.tensor < RAGG_ROLE_WORKER || m.tensor > RAGG_ROLE_SERVER ||
		    m.status != RAGG_ERR_ABORTED || m.count > INT32_MAX)
			return RAGG_ERR_PROTO;
		m.text = (const char *)p;
		*out = m;
		return 0;
	}
	m.rdesc.len = *p++;
	if (m.type < RAGG_MSG_DECLARE || m.type > RAGG_MSG_LAST || m.rdesc.len > RAGG_TP_RDESC_MAX ||
	    len != (size_t)(p - (const uint8_t *)buf) + m.rdesc.len || m.tensor >= 128)
		return RAGG_ERR_PROTO;
	memcpy(m.rdesc.blob, p, m.rdesc.len);
	*out = m;
	return 0;
}

uint64_t ragg__name_hash(const char *name)
{
	uint8_t d[crypto_generichash_BYTES_MIN];
	uint64_t h;
	crypto_generichash(d, sizeof(d), (const uint8_t *)name, strlen(name), NULL, 0);
	memcpy(&h, d, sizeof(h));
	return le64toh(h);
}
