#include <string.h>

#include "bootstrap/kv.h"

#include <ragg/ragg.h>

int ragg__split_hostport(const char *addr, char *host, size_t host_cap, char *port, size_t port_cap)
{
	const char *colon, *h = addr;
	size_t hlen;

	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (!close || close[1] != ':')
			return RAGG_ERR_CONFIG;
		h = addr + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			return RAGG_ERR_CONFIG;
		hlen = (size_t)(colon - addr);
	}
	size_t plen = strlen(colon + 1);
	if (hlen == 0 || hlen >= host_cap || plen == 0 || plen >= port_cap)
		return RAGG_ERR_CONFIG;
	memcpy(host, h, hlen);
	host[hlen] = 0;
	memcpy(port, colon + 1, plen + 1);
	return 0;
}
