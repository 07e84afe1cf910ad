/*
 * Memory: blocks from mem_alloc() and registered regions.
 *
 * A block is a memfd mapped MAP_SHARED; a region registered inside one is
 * "shared", and a writer maps just the pages of that region from the
 * memfd, so its writes are a memcpy. Any other region is "private": a
 * writer reaches it with process_vm_writev(2), one copy as well, by the
 * address the owner gives it.
 *
 * Either way the writer learns where a region is only by asking us with
 * the region's id, key and length (MAP_REQ), checked here, so a peer
 * reaches only regions we registered and described to it. The key is
 * drawn from libsodium's CSPRNG at registration (util/softmr.h, which
 * also checks the request); a freed id may be reused, with a new key, so a
 * stale descriptor is refused rather than landing in someone else's memory.
 *
 * After that first answer the writer does not ask again; it checks on every
 * write that our region table (a sealed memfd it maps read-only) still
 * holds the generation it was told. Deregistering a region zeroes its
 * entry, so a writer holding a stale descriptor is refused without a word
 * between us.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shm.h"

#define HUGE_SIZE ((size_t)2 << 20)

static size_t page_size(void)
{
	long p = sysconf(_SC_PAGESIZE);
	return p > 0 ? (size_t)p : 4096;
}

int ragg__shm_regions_init(struct ragg__shm_dev *dev)
{
	size_t page = page_size();
	void *map;
	dev->gens_len = (dev->cfg.max_regions * sizeof(uint64_t) + page - 1) & ~(page - 1);
	int fd = ragg__shm_memfd(dev, "ragg-shm-regions", dev->gens_len, true, &map);
	if (fd < 0)
		return fd;
	dev->gens_fd = fd;
	dev->gens = map;
	dev->next_gen = 1;
	return 0;
}

void ragg__shm_regions_free(struct ragg__shm_dev *dev)
{
	ragg__tp_idtab_destroy(&dev->regions, free);
	for (uint32_t i = 0; i < dev->nblocks; i++) {
		munmap(dev->blocks[i]->addr, dev->blocks[i]->len);
		close(dev->blocks[i]->fd);
		free(dev->blocks[i]);
	}
	free(dev->blocks);
	dev->blocks = NULL;
	dev->nblocks = 0;
	if (dev->gens)
		munmap((void *)dev->gens, dev->gens_len);
	if (dev->gens_fd >= 0)
		close(dev->gens_fd);
	dev->gens = NULL;
	dev->gens_fd = -1;
}

void *ragg__shm_mem_alloc(struct ragg_tp_dev *d, size_t len)
{
	struct ragg__shm_dev *dev = ragg__shm_dev(d);
	size_t page = page_size();
	struct ragg__shm_block *b;
	void *map;

	if (len > SIZE_MAX - page)
		return NULL;
	len = len ? (len + page - 1) & ~(page - 1) : page;
	if (dev->nblocks == dev->blocks_cap) {
		uint32_t cap = dev->blocks_cap ? dev->blocks_cap * 2 : 16;
		struct ragg__shm_block **nb = realloc(dev->blocks, cap * sizeof(*nb));
		if (!nb)
			return NULL;
		dev->blocks = nb;
		dev->blocks_cap = cap;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	/* The name only shows in /proc/<pid>/maps; a memfd has no path, so
	 * it is gone with the last fd and mapping, however the job ends. */
	int fd = ragg__shm_memfd(dev, "ragg-shm", len, false, &map);
	if (fd < 0) {
		free(b);
		return NULL;
	}
	/* Huge pages where the admin allows them for shmem
	 * (transparent_hugepage/shmem_enabled "advise"): fewer TLB misses in
	 * every copy. A no-op elsewhere. */
	if (len >= HUGE_SIZE)
		madvise(map, len, MADV_HUGEPAGE);
	b->addr = map;
	b->len = len;
	b->fd = fd;
	dev->blocks[dev->nblocks++] = b;
	ragg__shm_debug(dev, "mem_alloc: %zu bytes of shared memory at %p", len, map);
	return map;
}

void ragg__shm_mem_free(struct ragg_tp_dev *d, void *p, size_t len)
{
	struct ragg__shm_dev *dev = ragg__shm_dev(d);
	uint32_t i;

	if (!p)
		return;
	for (i = 0; i < dev->nblocks && dev->blocks[i]->addr != p; i++)
		;
	if (i == dev->nblocks) {
		ragg__shm_error(dev, "mem_free(%p, %zu): not from mem_alloc; ignored", p, len);
		return;
	}
	struct ragg__shm_block *b = dev->blocks[i];
	/* Regions still registered in it stop admitting writes: writers
	 * that mapped it would otherwise write into memory we reuse. */
	for (uint32_t k = 0; k < dev->regions.n; k++) {
		struct ragg__tp_softmr *soft = ragg__tp_idtab_get(&dev->regions, k);
		struct ragg__shm_mr *mr =
		    soft ? ragg__container_of(soft, struct ragg__shm_mr, soft) : NULL;
		if (mr && mr->block == b) {
			ragg__shm_warn(dev, "mem_free: region %" PRIu32 " still registered in it",
			               mr->soft.id);
			atomic_store_explicit(&dev->gens[mr->soft.id], 0, memory_order_release);
			mr->block = NULL;
			mr->gen = 0;
		}
	}
	munmap(b->addr, b->len);
	close(b->fd);
	free(b);
	dev->blocks[i] = dev->blocks[--dev->nblocks];
}

static struct ragg__shm_block *block_of(struct ragg__shm_dev *dev, const void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr;
	for (uint32_t i = 0; i < dev->nblocks; i++) {
		struct ragg__shm_block *b = dev->blocks[i];
		uintptr_t s = (uintptr_t)b->addr;
		if (a >= s && a - s <= b->len && len <= b->len - (a - s))
			return b;
	}
	return NULL;
}

int ragg__shm_mr_reg(struct ragg_tp_dev *d, void *addr, size_t len, struct ragg_tp_mr **out,
                     struct ragg_tp_rdesc *rdesc)
{
	struct ragg__shm_dev *dev = ragg__shm_dev(d);
	struct ragg__shm_mr *mr;
	int rc;

	if (!out)
		return -EINVAL;
	mr = calloc(1, sizeof(*mr));
	if (!mr)
		return -ENOMEM;
	rc = ragg__tp_softmr_reg(&dev->regions, (uint32_t)dev->cfg.max_regions, &mr->soft, addr,
	                         len, RAGG__TP_ACCESS_REMOTE_WRITE);
	if (rc) {
		if (rc != -EINVAL)
			ragg__shm_error(dev, "mr_reg: region table: %s%s", strerror(-rc),
			                rc == -ENOSPC ? " (raise RAGG_SHM_MAX_REGIONS)" : "");
		goto err_free;
	}
	uint32_t id = mr->soft.id;
	mr->dev = dev;
	mr->block = block_of(dev, addr, len);
	mr->gen = dev->next_gen++;
	atomic_store_explicit(&dev->gens[id], mr->gen, memory_order_release);
	if (rdesc) {
		struct ragg__shm_rdesc desc = {
			.kind = mr->block ? RAGG__SHM_KIND_SHARED : RAGG__SHM_KIND_PRIVATE,
			.region = id,
			.key = mr->soft.key,
			.length = len,
		};
		ragg__shm_rdesc_pack(&desc, rdesc);
	}
	ragg__shm_debug(dev, "region %" PRIu32 ": %zu bytes at %p, %s", id, len, addr,
	                mr->block ? "shared" : "private");
	*out = &mr->soft.base;
	return 0;

err_free:
	free(mr);
	return rc;
}

int ragg__shm_mr_dereg(struct ragg_tp_mr *m)
{
	if (!m)
		return -EINVAL;
	struct ragg__shm_mr *mr = ragg__container_of(m, struct ragg__shm_mr, soft.base);
	struct ragg__shm_dev *dev = mr->dev;
	atomic_store_explicit(&dev->gens[mr->soft.id], 0, memory_order_release);
	ragg__tp_softmr_dereg(&dev->regions, &mr->soft);
	free(mr);
	return 0;
}

struct ragg__shm_mr *ragg__shm_region_check(struct ragg__shm_dev *dev, uint32_t id, uint64_t key,
                                            uint64_t length, int *status, const char **why)
{
	struct ragg__tp_softmr *soft;
	int rc = ragg__tp_softmr_check(&dev->regions, id, key, 0, length,
	                               RAGG__TP_ACCESS_REMOTE_WRITE, &soft, why);
	if (rc) {
		*status = rc;
		return NULL;
	}
	struct ragg__shm_mr *mr = ragg__container_of(soft, struct ragg__shm_mr, soft);
	/* The whole region is mapped or written by address: the writer must
	 * know it exactly, as its bounds check is against this length. */
	if (length != mr->soft.base.len) {
		*status = RAGG_ERR_BOUNDS;
		*why = "the descriptor's length is not the region's";
		return NULL;
	}
	if (!mr->gen) {
		*status = RAGG_ERR_KEY;
		*why = "its memory was freed";
		return NULL;
	}
	if (!mr->block && !dev->cma) {
		*status = -EPERM;
		*why = "private memory, which peers cannot write into here (allocate it with "
		       "mem_alloc)";
		return NULL;
	}
	return mr;
}
