/* Logging: silent unless RAGG_LOG asks for it. The function that first sees
 * an error logs it; callers up the stack only return the code. */
#ifndef RAGG_LOG_H
#define RAGG_LOG_H

#include <ragg/transport.h>

/* Process-wide; every ragg_init() sets it from RAGG_LOG, possibly on
 * several threads at once (a job run as threads), so it is accessed
 * atomically. */
extern int ragg__log_level;
static inline int ragg__log_get(void)
{
	return __atomic_load_n(&ragg__log_level, __ATOMIC_RELAXED);
}
static inline void ragg__log_set(int level)
{
	__atomic_store_n(&ragg__log_level, level, __ATOMIC_RELAXED);
}

void ragg__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Level from a name ("error", "warn", "info", "debug", "none"); -1 when unknown. */
int ragg__log_parse(const char *name);

#define RAGG_LOG_AT(level, ...)                                                                    \
	do {                                                                                       \
		if (ragg__log_get() >= (level))                                                    \
			ragg__log((level), __VA_ARGS__);                                           \
	} while (0)
#define ragg__error(...) RAGG_LOG_AT(RAGG_LOG_ERROR, __VA_ARGS__)
#define ragg__warn(...)  RAGG_LOG_AT(RAGG_LOG_WARN, __VA_ARGS__)
#define ragg__info(...)  RAGG_LOG_AT(RAGG_LOG_INFO, __VA_ARGS__)
#define ragg__debug(...) RAGG_LOG_AT(RAGG_LOG_DEBUG, __VA_ARGS__)

#endif
