/*
 * Settings of the shm transport: one table, each row read from
 * RAGG_SHM_<FIELD> by the shared loader (transports/util). The man page
 * ragg-shm(7) lists the same rows.
 */
#include "config.h"

#include "shm.h"
#include "../util/settings.h"

#define FIELD(f) RAGG__TP_FIELD(struct ragg__shm_config, f)

const struct ragg__tp_setting ragg__tp_shm_settings[] = {
	{ "QUEUE_DEPTH", "256", RAGG__TP_SIZE, FIELD(queue_depth), 32, 65536,
	  "16-byte slots of each endpoint's completion ring: writes with an immediate in flight "
	  "before -EAGAIN (a message takes 1 + length/16); rounded up to a power of two" },
	{ "CMA", "1", RAGG__TP_BOOL, FIELD(cma), 0, 0,
	  "let peers write with process_vm_writev(2) into registered memory that did not come "
	  "from mem_alloc (needs ptrace permission; see ragg-shm(7))" },
	{ "MAX_REGIONS", "65536", RAGG__TP_SIZE, FIELD(max_regions), 16, 1 << 24,
	  "regions registered at once per device" },
	{ "BACKLOG", "512", RAGG__TP_SIZE, FIELD(backlog), 1, 65535, "listen(2) backlog" },
	{ NULL, NULL, 0, 0, 0, 0, 0, NULL },
};

static void log_error(void *dev, const char *msg)
{
	ragg__shm_error((struct ragg__shm_dev *)dev, "%s", msg);
}

int ragg__shm_config_read(struct ragg__shm_dev *dev, struct ragg__shm_config *cfg)
{
	struct ragg__shm_config c;
	int rc =
	    ragg__tp_settings_load("SHM", ragg__tp_shm_settings, &c, sizeof(c), log_error, dev);
	if (rc)
		return rc;
	size_t depth = 32;
	while (depth < c.queue_depth)
		depth <<= 1;
	c.queue_depth = depth;
	*cfg = c;
	return 0;
}
