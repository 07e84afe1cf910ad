#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "idtab.h"

int ragg__tp_idtab_free_id(struct ragg__tp_idtab *t, uint32_t max, uint32_t *id)
{
	for (uint32_t i = 0; i < t->n; i++) {
		if (!t->slot[i]) {
			*id = i;
			return 0;
		}
	}
	if (t->n >= max)
		return -ENOSPC;
	uint32_t n = t->n ? (t->n > max / 2 ? max : t->n * 2) : (max < 16 ? max : 16);
	void **s = realloc(t->slot, (size_t)n * sizeof(*s));
	if (!s)
		return -ENOMEM;
	memset(s + t->n, 0, (size_t)(n - t->n) * sizeof(*s));
	*id = t->n;
	t->slot = s;
	t->n = n;
	return 0;
}

void ragg__tp_idtab_destroy(struct ragg__tp_idtab *t, void (*release)(void *obj))
{
	for (uint32_t i = 0; release && i < t->n; i++)
		if (t->slot[i])
			release(t->slot[i]);
	free(t->slot);
	t->slot = NULL;
	t->n = 0;
}
