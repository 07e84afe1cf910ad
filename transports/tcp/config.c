/*
 * Settings of the tcp transport: one table, each row read from
 * RAGG_TCP_<FIELD> by the shared loader (transports/util). The man page
 * ragg-tcp(7) lists the same rows.
 */
#include "config.h"

#include <stdint.h>

#include "tcp.h"
#include "../util/settings.h"

#define FIELD(f) RAGG__TP_FIELD(struct ragg__tcp_config, f)

const struct ragg__tp_setting ragg__tp_tcp_settings[] = {
	{ "SNDBUF", "0", RAGG__TP_SIZE, FIELD(sndbuf), 0, SIZE_MAX / 2,
	  "socket send buffer (SO_SNDBUF); 0 leaves it to the kernel's autotuning" },
	{ "RCVBUF", "0", RAGG__TP_SIZE, FIELD(rcvbuf), 0, SIZE_MAX / 2,
	  "socket receive buffer (SO_RCVBUF); 0 leaves it to the kernel's autotuning" },
	{ "LOCAL_SNDBUF", "256K", RAGG__TP_SIZE, FIELD(local_sndbuf), 0, SIZE_MAX / 2,
	  "send buffer towards a peer on this host, where a small one keeps the copies in cache; "
	  "0: as SNDBUF" },
	{ "QUEUE_DEPTH", "256", RAGG__TP_SIZE, FIELD(queue_depth), 2, 65536,
	  "writes and messages pending per endpoint before -EAGAIN (rounded up to a power of "
	  "two)" },
	{ "NODELAY", "1", RAGG__TP_BOOL, FIELD(nodelay), 0, 0,
	  "set TCP_NODELAY on every connection" },
	{ "BACKLOG", "512", RAGG__TP_SIZE, FIELD(backlog), 1, 65535, "listen(2) backlog" },
	{ "IFACE", "", RAGG__TP_STRING, FIELD(iface), 0, 0,
	  "interface whose address a wildcard listen advertises (default: first non-loopback)" },
	{ "SEAL_THREADS", "1", RAGG__TP_SIZE, FIELD(seal_threads), 0, 16,
	  "helper threads per device that seal and open records beside the polling thread "
	  "(RAGG_SEAL=on); 0: the polling thread alone" },
	{ NULL, NULL, 0, 0, 0, 0, 0, NULL },
};

static void log_error(void *dev, const char *msg)
{
	ragg__tcp_error((struct ragg__tcp_dev *)dev, "%s", msg);
}

int ragg__tcp_config_read(struct ragg__tcp_dev *dev, struct ragg__tcp_config *cfg)
{
	struct ragg__tcp_config c;
	int rc =
	    ragg__tp_settings_load("TCP", ragg__tp_tcp_settings, &c, sizeof(c), log_error, dev);
	if (rc)
		return rc;
	size_t depth = 2;
	while (depth < c.queue_depth)
		depth <<= 1;
	c.queue_depth = depth;
	*cfg = c;
	return 0;
}
