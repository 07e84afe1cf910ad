#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

int ragg__log_level = RAGG_LOG_NONE;

static const char *const level_names[] = { "none", "error", "warn", "info", "debug" };

int ragg__log_parse(const char *name)
{
	for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

/* One write(2) per message so lines from several processes sharing a
 * terminal or pipe do not interleave mid-line. */
void ragg__log(int level, const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int n = snprintf(line, sizeof(line), "ragg[%d] %ld.%03ld %s: ", (int)getpid(),
	                 (long)(ts.tv_sec % 100000), ts.tv_nsec / 1000000L,
	                 level >= 0 && level <= RAGG_LOG_DEBUG ? level_names[level] : "?");
	va_list ap;
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}
