/* Stubs for operations a transport does not provide (stubs.h). */
#include "config.h"

#include <errno.h>

#include "stubs.h"

int ragg__tp_describe_none(char *buf, size_t len)
{
	if (buf && len)
		buf[0] = '\0';
	return -EOPNOTSUPP;
}
