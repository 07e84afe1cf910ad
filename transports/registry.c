/* The built-in transports, in the order `auto` tries them. */
#include <string.h>

#include "config.h"
#include "compiler.h"

#include <ragg/transport.h>

extern const struct ragg_tp_ops ragg__tp_tcp_ops;
extern const struct ragg_tp_ops ragg__tp_shm_ops;
#ifdef RAGG_HAVE_VERBS
extern const struct ragg_tp_ops ragg__tp_verbs_ops;
#endif

static const struct ragg_tp_ops *const registry[] = {
#ifdef RAGG_HAVE_VERBS
	&ragg__tp_verbs_ops,
#endif
	&ragg__tp_shm_ops,
	&ragg__tp_tcp_ops,
	NULL,
};

RAGG_EXPORT const struct ragg_tp_ops *const *ragg_transport_list(void)
{
	return registry;
}

RAGG_EXPORT const struct ragg_tp_ops *ragg_transport_find(const char *name)
{
	for (const struct ragg_tp_ops *const *t = registry; *t; t++)
		if (strcmp((*t)->name, name) == 0)
			return *t;
	return NULL;
}
