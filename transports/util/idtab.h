/*
 * A table of objects by small integer id, the registered regions of a
 * device: a frame or a map request names a region by its id, so lookup is
 * an index. The lowest free id is handed out, so ids stay small and the
 * table only grows (doubling, up to a limit) when every id is taken.
 */
#ifndef RAGG_TP_UTIL_IDTAB_H
#define RAGG_TP_UTIL_IDTAB_H

#include <stddef.h>
#include <stdint.h>

struct ragg__tp_idtab {
	void **slot; /* by id; NULL where free */
	uint32_t n;
};

/* The lowest free id, growing the table up to max entries: 0, -ENOSPC
 * (max ids taken) or -ENOMEM. The id stays free until set. */
int ragg__tp_idtab_free_id(struct ragg__tp_idtab *t, uint32_t max, uint32_t *id);

static inline void *ragg__tp_idtab_get(const struct ragg__tp_idtab *t, uint32_t id)
{
	return id < t->n ? t->slot[id] : NULL;
}

/* id comes from free_id (or held an object): it is inside the table. */
static inline void ragg__tp_idtab_set(struct ragg__tp_idtab *t, uint32_t id, void *obj)
{
	t->slot[id] = obj;
}

/* Release every object with release (when not NULL), then the table. */
void ragg__tp_idtab_destroy(struct ragg__tp_idtab *t, void (*release)(void *obj));

#endif
