/* Names and texts of every status code, from the X-macro in ragg.h and the
 * C library's errno table. */
#include <errno.h>
#include <string.h>

#include "compiler.h"

#include <ragg/ragg.h>

RAGG_EXPORT const char *ragg_strerror(int status)
{
	switch (status) {
	case 0:
		return "success";
#define RAGG_X_TEXT(name, value, text)                                                             \
	case value:                                                                                \
		return text;
		RAGG_ERRNO_MAP(RAGG_X_TEXT)
#undef RAGG_X_TEXT
	default:
		break;
	}
	if (status < 0 && status > -256) {
		const char *d = strerrordesc_np(-status);
		if (d)
			return d;
	}
	return "unknown error";
}

RAGG_EXPORT const char *ragg_strerror_name(int status)
{
	switch (status) {
	case 0:
		return "OK";
#define RAGG_X_NAME(name, value, text)                                                             \
	case value:                                                                                \
		return #name;
		RAGG_ERRNO_MAP(RAGG_X_NAME)
#undef RAGG_X_NAME
	default:
		break;
	}
	if (status < 0 && status > -256) {
		const char *n = strerrorname_np(-status);
		if (n)
			return n;
	}
	return "UNKNOWN";
}
