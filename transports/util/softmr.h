/*
 * Software memory registration, for transports whose remote writes are
 * carried out by the receiver's own code (tcp receives a frame into the
 * region; shm tells a writer where the region is) rather than by a NIC
 * that checks a key in hardware.
 *
 * A region gets the lowest free id of the device's table and a 64-bit key
 * drawn from libsodium's CSPRNG. A peer names the region by id and proves
 * it was given the descriptor with the key; a freed id may be reused, but
 * with a new key, so a stale descriptor is refused rather than landing in
 * someone else's memory.
 *
 * ragg__tp_softmr_check() is the one place where a remote access is
 * admitted: every field a peer sends (region id, key, offset, length,
 * the access it asks for) is checked there, with arithmetic that cannot
 * wrap. A transport adds only what is its own (shm: the region's
 * generation, whether a writer can reach private memory).
 */
#ifndef RAGG_TP_UTIL_SOFTMR_H
#define RAGG_TP_UTIL_SOFTMR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ragg/transport.h>

#include "idtab.h"

/* What a peer may do with a region. */
#define RAGG__TP_ACCESS_REMOTE_WRITE (1u << 0)

/* The head of a transport's region object, and its first member (the
 * region table's release function frees the transport's object through
 * a pointer to it). */
struct ragg__tp_softmr {
	struct ragg_tp_mr base; /* addr, len as registered */
	uint32_t id;
	unsigned access; /* RAGG__TP_ACCESS_* granted to peers */
	uint64_t key;
};

/*
 * Whether [off, off + len) lies inside a region of size bytes, without
 * computing off + len. An empty access exactly at the end is inside.
 */
static inline bool ragg__tp_in_bounds(uint64_t size, uint64_t off, uint64_t len)
{
	return off <= size && len <= size - off;
}

/* Whether [addr, addr + len) lies inside the memory of mr (a local write
 * source). */
static inline bool ragg__tp_mr_holds(const struct ragg_tp_mr *mr, const void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr, s = (uintptr_t)mr->addr;
	return a >= s && ragg__tp_in_bounds(mr->len, a - s, len);
}

/*
 * Register [addr, addr + len) in table t (at most max_ids ids) with the
 * given access: mr (the caller's, zeroed or not) gets its id and a fresh
 * key and is entered in the table. 0, -EINVAL (bad range), -ENOSPC (every
 * id taken) or -ENOMEM; mr and t are untouched on failure.
 */
int ragg__tp_softmr_reg(struct ragg__tp_idtab *t, uint32_t max_ids, struct ragg__tp_softmr *mr,
                        void *addr, size_t len, unsigned access);

/* Take mr out of its table and forget its key; its id may be reused. */
void ragg__tp_softmr_dereg(struct ragg__tp_idtab *t, struct ragg__tp_softmr *mr);

/*
 * Admit a peer's access of len bytes at offset off of region id, proved
 * by key, asking for access (RAGG__TP_ACCESS_*). 0 and *mr set; or
 * RAGG_ERR_KEY (no such region, wrong key), -EACCES (access not granted)
 * or RAGG_ERR_BOUNDS (not inside the region), with *why saying which in a
 * few words. The key comparison takes the same time wherever the keys
 * differ.
 */
int ragg__tp_softmr_check(const struct ragg__tp_idtab *t, uint32_t id, uint64_t key, uint64_t off,
                          uint64_t len, unsigned access, struct ragg__tp_softmr **mr,
                          const char **why);

#endif
