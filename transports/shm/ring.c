/*
 * The completion ring (layout and protocol in wire.h).
 *
 * Each side keeps its own copy of the ring's size, taken from the handshake
 * and never re-read from shared memory, and its own position; only tail,
 * head and the two wake flags are shared. The producer caches the head it
 * last read, so a ring that is not full costs it no read of the consumer's
 * cache line.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shm.h"

static size_t ring_bytes(uint32_t slots)
{
	return sizeof(struct ragg__shm_ring_hdr) + (size_t)slots * RAGG__SHM_REC_SIZE;
}

static void ring_view(struct ragg__shm_ring *r, void *map, size_t len, uint32_t slots)
{
	r->hdr = map;
	r->map_len = len;
	r->slots = slots;
	r->mask = slots - 1;
	r->pos = 0;
	r->seen = 0;
}

int ragg__shm_ring_create(struct ragg__shm_dev *dev, struct ragg__shm_ring *r, uint32_t slots,
                          int *fd)
{
	void *map;
	size_t len = ring_bytes(slots);
	int rc = ragg__shm_memfd(dev, "ragg-shm-ring", len, false, &map);
	if (rc < 0)
		return rc;
	ring_view(r, map, len, slots);
	r->hdr->magic = RAGG__SHM_RING_MAGIC;
	r->hdr->slots = slots;
	*fd = rc;
	return 0;
}

int ragg__shm_ring_attach(struct ragg__shm_dev *dev, struct ragg__shm_ring *r, int fd,
                          uint32_t slots)
{
	if (slots < 32 || slots > (1u << 20) || (slots & (slots - 1))) {
		ragg__shm_error(dev, "peer's ring has %u slots: not a power of two in [32, 2^20]",
		                slots);
		return RAGG_ERR_PROTO;
	}
	size_t len = ring_bytes(slots);
	int rc = ragg__shm_memfd_check(dev, fd, len, "ring");
	if (rc)
		return rc;
	void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		rc = -errno;
		ragg__shm_error(dev, "mapping the peer's ring: %s", strerror(-rc));
		return rc;
	}
	ring_view(r, map, len, slots);
	if (r->hdr->magic != RAGG__SHM_RING_MAGIC || r->hdr->slots != slots) {
		ragg__shm_error(dev, "the peer's ring is not a ring of %u slots", slots);
		munmap(map, len);
		r->hdr = NULL;
		return RAGG_ERR_PROTO;
	}
	/* The consumer starts at 0 and nothing was produced yet. */
	return 0;
}

void ragg__shm_ring_unmap(struct ragg__shm_ring *r)
{
	if (r->hdr)
		munmap(r->hdr, r->map_len);
	r->hdr = NULL;
}

static void kick(int efd)
{
	uint64_t one = 1;
	/* Only EAGAIN (counter at its maximum) can fail here, and then the
	 * consumer is awake anyway. */
	ssize_t n = write(efd, &one, sizeof(one));
	(void)n;
}

/* ---- producer ---- */

bool ragg__shm_ring_room(struct ragg__shm_ring *r, uint32_t n)
{
	struct ragg__shm_ring_hdr *h = r->hdr;

	if (r->slots - (r->pos - r->seen) >= n)
		return true;
	r->seen = atomic_load_explicit(&h->head, memory_order_acquire);
	/* A head past our tail or too far behind is the consumer's bug:
	 * treat the ring as full rather than overwrite what it may read. */
	if (r->pos - r->seen > r->slots) {
		r->seen = r->pos - r->slots;
		return false;
	}
	if (r->slots - (r->pos - r->seen) >= n)
		return true;
	atomic_store_explicit(&h->starved, 1, memory_order_seq_cst);
	atomic_thread_fence(memory_order_seq_cst);
	r->seen = atomic_load_explicit(&h->head, memory_order_acquire);
	if (r->pos - r->seen > r->slots) {
		r->seen = r->pos - r->slots;
		return false;
	}
	return r->slots - (r->pos - r->seen) >= n;
}

void ragg__shm_ring_put_write(struct ragg__shm_ring *r, uint32_t imm, uint64_t len)
{
	struct ragg__shm_rec *rec = &r->hdr->recs[r->pos++ & r->mask];
	*rec = (struct ragg__shm_rec){ .type = RAGG__SHM_REC_WRITE, .imm = imm, .len = len };
}

void ragg__shm_ring_put_msg(struct ragg__shm_ring *r, const void *buf, size_t len)
{
	struct ragg__shm_rec *rec = &r->hdr->recs[r->pos++ & r->mask];
	*rec = (struct ragg__shm_rec){ .type = RAGG__SHM_REC_MSG, .len = len };
	const uint8_t *src = buf;
	while (len) {
		/* Up to the end of the slot array, then from its start. */
		uint32_t at = (uint32_t)(r->pos & r->mask);
		size_t room = (size_t)(r->slots - at) * RAGG__SHM_REC_SIZE;
		size_t n = len < room ? len : room;
		memcpy(&r->hdr->recs[at], src, n);
		src += n;
		len -= n;
		r->pos += (n + RAGG__SHM_REC_SIZE - 1) / RAGG__SHM_REC_SIZE;
	}
}

void ragg__shm_ring_publish(struct ragg__shm_ring *r, int efd)
{
	struct ragg__shm_ring_hdr *h = r->hdr;
	atomic_store_explicit(&h->tail, r->pos, memory_order_release);
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&h->sleeping, memory_order_relaxed) &&
	    atomic_exchange_explicit(&h->sleeping, 0, memory_order_relaxed))
		kick(efd);
}

/* ---- consumer ---- */

int64_t ragg__shm_ring_avail(struct ragg__shm_ring *r)
{
	uint64_t t = atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
	if (t - r->pos > r->slots)
		return -1;
	r->seen = t;
	return (int64_t)(t - r->pos);
}

struct ragg__shm_rec ragg__shm_ring_peek(const struct ragg__shm_ring *r)
{
	struct ragg__shm_rec rec;
	memcpy(&rec, &r->hdr->recs[r->pos & r->mask], sizeof(rec));
	return rec;
}

void ragg__shm_ring_copy_msg(const struct ragg__shm_ring *r, void *buf, size_t len)
{
	uint64_t pos = r->pos + 1;
	uint8_t *dst = buf;
	while (len) {
		uint32_t at = (uint32_t)(pos & r->mask);
		size_t room = (size_t)(r->slots - at) * RAGG__SHM_REC_SIZE;
		size_t n = len < room ? len : room;
		memcpy(dst, &r->hdr->recs[at], n);
		dst += n;
		len -= n;
		pos += (n + RAGG__SHM_REC_SIZE - 1) / RAGG__SHM_REC_SIZE;
	}
}

void ragg__shm_ring_release(struct ragg__shm_ring *r, int efd)
{
	struct ragg__shm_ring_hdr *h = r->hdr;
	atomic_store_explicit(&h->head, r->pos, memory_order_release);
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&h->starved, memory_order_relaxed) &&
	    atomic_exchange_explicit(&h->starved, 0, memory_order_relaxed) && efd >= 0)
		kick(efd);
}

bool ragg__shm_ring_sleep(struct ragg__shm_ring *r)
{
	atomic_store_explicit(&r->hdr->sleeping, 1, memory_order_seq_cst);
	atomic_thread_fence(memory_order_seq_cst);
	return atomic_load_explicit(&r->hdr->tail, memory_order_acquire) != r->pos;
}

void ragg__shm_ring_awake(struct ragg__shm_ring *r)
{
	atomic_store_explicit(&r->hdr->sleeping, 0, memory_order_relaxed);
}
