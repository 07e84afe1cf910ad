/*
 * The built-in transports: one list, in the order RAGG_TRANSPORT=auto tries
 * them (same-host shared memory first, then RDMA where a port is active,
 * then tcp, which runs anywhere). Everything else that enumerates the
 * transports is derived from RAGG__TP_LIST: the tables
 * ragg_transport_list() returns, the settings tables ragg-info prints, and
 * auto's order (src/transports.c walks ragg_transport_list()).
 *
 * X(name, PREFIX): the transport's table is ragg__tp_<name>_ops, its
 * settings ragg__tp_<name>_settings, read from RAGG_<PREFIX>_*.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "compiler.h"
#include "registry.h"

#include <ragg/transport.h>

#ifdef RAGG_HAVE_VERBS
#define RAGG__TP_VERBS(X) X(verbs, VERBS)
#else
#define RAGG__TP_VERBS(X)
#endif

#define RAGG__TP_LIST(X)                                                                           \
	X(shm, SHM)                                                                                \
	RAGG__TP_VERBS(X)                                                                          \
	X(tcp, TCP)

#define DECLARE(name, prefix) extern const struct ragg_tp_ops ragg__tp_##name##_ops;
RAGG__TP_LIST(DECLARE)
#undef DECLARE

#define OPS(name, prefix) &ragg__tp_##name##_ops,
static const struct ragg_tp_ops *const registry[] = { RAGG__TP_LIST(OPS) NULL };
#undef OPS

#define ENTRY(name, prefix) { &ragg__tp_##name##_ops, #prefix, ragg__tp_##name##_settings },
const struct ragg__tp_entry ragg__tp_registry[] = { RAGG__TP_LIST(ENTRY){ NULL, NULL, NULL } };
#undef ENTRY

RAGG_EXPORT const struct ragg_tp_ops *const *ragg_transport_list(void)
{
	return registry;
}

RAGG_EXPORT const struct ragg_tp_ops *ragg_transport_find(const char *name)
{
	if (!name)
		return NULL;
	for (const struct ragg_tp_ops *const *t = registry; *t; t++)
		if (strcmp((*t)->name, name) == 0)
			return *t;
	return NULL;
}

__attribute__((format(printf, 4, 5))) static int refuse(char *why, size_t why_len, int rc,
                                                        const char *fmt, ...)
{
	if (why && why_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, why_len, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* The operations every table has, from probe to wait (the first version's
 * table): each is set, to a stub returning -EOPNOTSUPP if need be. */
#define OP(op) offsetof(struct ragg_tp_ops, op), #op
static const struct {
	size_t offset;
	const char *name;
} required[] = {
	{ OP(probe) },    { OP(open) },      { OP(close) },   { OP(query) },  { OP(mr_reg) },
	{ OP(mr_dereg) }, { OP(listen) },    { OP(connect) }, { OP(accept) }, { OP(reject) },
	{ OP(ep_close) }, { OP(write_imm) }, { OP(send) },    { OP(poll) },   { OP(wait) },
};
#undef OP

/* Whether the function pointer at offset of ops is set (all of the
 * table's pointers are function pointers, of one representation). */
static bool op_set(const struct ragg_tp_ops *ops, size_t offset)
{
	void (*fn)(void);
	memcpy(&fn, (const char *)ops + offset, sizeof(fn));
	return fn != NULL;
}

RAGG_EXPORT int ragg_transport_check(const struct ragg_tp_ops *ops, char *why, size_t why_len)
{
	const size_t min = offsetof(struct ragg_tp_ops, wait) + sizeof(ops->wait);

	if (why && why_len)
		why[0] = '\0';
	if (!ops)
		return refuse(why, why_len, -EINVAL, "no table");
	/* abi first: a table of another ABI may lay out even its size
	 * differently, so nothing else of it is read before. */
	if (ops->abi != RAGG_TP_ABI_VERSION)
		return refuse(why, why_len, RAGG_ERR_VERSION,
		              "table of transport ABI %u; this library speaks ABI %u", ops->abi,
		              RAGG_TP_ABI_VERSION);
	if (ops->size < min)
		return refuse(why, why_len, RAGG_ERR_VERSION,
		              "table of %zu bytes, smaller than the %zu of its ABI's required "
		              "operations",
		              ops->size, min);
	if (!ops->name || !ops->name[0])
		return refuse(why, why_len, -EINVAL, "table without a name");
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(required); i++)
		if (!op_set(ops, required[i].offset))
			return refuse(why, why_len, -EINVAL,
			              "transport %s: operation %s is NULL (a transport that lacks "
			              "it sets a stub returning -EOPNOTSUPP)",
			              ops->name, required[i].name);
	/* Operations added since are set whenever the table is large enough to
	 * hold them: stubs, not NULL, for what the transport lacks. */
	if (ops->size >= offsetof(struct ragg_tp_ops, describe) + sizeof(ops->describe) &&
	    !ops->describe)
		return refuse(why, why_len, -EINVAL,
		              "transport %s: operation describe is NULL (a transport that "
		              "lacks it sets a stub returning -EOPNOTSUPP)",
		              ops->name);
	if (ops->size >= offsetof(struct ragg_tp_ops, seal) + sizeof(ops->seal) && !ops->seal)
		return refuse(why, why_len, -EINVAL,
		              "transport %s: operation seal is NULL (a transport that "
		              "lacks it sets a stub returning -EOPNOTSUPP)",
		              ops->name);
	if (RAGG_TP_HAS_OP(ops, arm) != RAGG_TP_HAS_OP(ops, wait_fd))
		return refuse(why, why_len, -EINVAL,
		              "transport %s: arm and wait_fd go together, both or neither",
		              ops->name);
	if (RAGG_TP_HAS_OP(ops, mem_alloc) != RAGG_TP_HAS_OP(ops, mem_free))
		return refuse(why, why_len, -EINVAL,
		              "transport %s: mem_alloc and mem_free go together, both or neither",
		              ops->name);
	return 0;
}
