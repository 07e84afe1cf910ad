/*
 * The device parameters a transport keeps (see params.h).
 */
#include "config.h"

#include <string.h>

#include "params.h"

static void log_nothing(int level, const char *fmt, ...)
{
	(void)level;
	(void)fmt;
}

void ragg__tp_params_copy(struct ragg_tp_params *dst, const struct ragg_tp_params *src)
{
	dst->wake_fd = -1;
	memcpy(dst, src, src->size < sizeof(*src) ? src->size : sizeof(*src));
	dst->size = sizeof(*dst);
	if (!dst->log)
		dst->log = log_nothing;
}
