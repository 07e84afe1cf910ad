/*
 * Settings of the verbs transport: one table, each row read from
 * RAGG_VERBS_<FIELD> by the shared loader (transports/util), once per
 * probe() and open(). The man page ragg-verbs(7) lists the same rows.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>

#include "verbs.h"
#include "../util/settings.h"

#define FIELD(f) RAGG__TP_FIELD(struct ragg__verbs_config, f)

const struct ragg__tp_setting ragg__tp_verbs_settings[] = {
	{"DEVICE", "", RAGG__TP_STRING, FIELD(device), 0, 0,
	 "RDMA device to use (e.g. mlx5_0, rxe0); empty: the first with an active port"},
	{"PORT", "0", RAGG__TP_INT, FIELD(port), 0, 255,
	 "port of the device; 0: the first active port"},
	{"GID_INDEX", "-1", RAGG__TP_INT, FIELD(gid_index), -1, 65535,
	 "GID whose address a listener without a host advertises and connections leave from; "
	 "-1: the first RoCE v2 IPv4 GID (rdma_cm then picks the GID of that address)"},
	{"QUEUE_DEPTH", "128", RAGG__TP_INT, FIELD(queue_depth), 4, 32768,
	 "send work requests in flight per endpoint before write_imm/send say try again"},
	{"SRQ_DEPTH", "0", RAGG__TP_INT, FIELD(srq_depth), 0, 1 << 20,
	 "receives posted on the shared receive queue (each write with immediate uses one); "
	 "0: max(1024, queue depth x max peers), capped by the device"},
	{"CQ_DEPTH", "0", RAGG__TP_INT, FIELD(cq_depth), 0, 1 << 22,
	 "completion queue size; 0: SRQ depth + queue depth x max peers (grown as endpoints come)"},
	{"INLINE", "220", RAGG__TP_INT, FIELD(inline_size), 0, 4096,
	 "writes and sends up to this many bytes go inline (the device may allow less)"},
	{"SIGNAL_INTERVAL", "16", RAGG__TP_INT, FIELD(signal_interval), 1, 32768,
	 "request a completion every this many unsignalled work requests"},
	{"POLL_BATCH", "16", RAGG__TP_INT, FIELD(poll_batch), 1, 256,
	 "completions taken per ibv_poll_cq call"},
	{"MAX_MSG_SIZE", "0", RAGG__TP_SIZE, FIELD(max_msg_size), 0, LLONG_MAX,
	 "largest payload of one work request; longer writes are split; 0: the port's max_msg_sz"},
	{"BOUNCE_SIZE", "1m", RAGG__TP_SIZE, FIELD(bounce_size), 0, LLONG_MAX,
	 "per-endpoint copy buffer for writes from unregistered memory longer than inline data "
	 "(the largest such write)"},
	{"RESOLVE_TIMEOUT_MS", "2000", RAGG__TP_INT, FIELD(resolve_timeout_ms), 1, 600000,
	 "rdma_cm address and route resolution timeout"},
	{"TOS", "-1", RAGG__TP_INT, FIELD(tos), -1, 255,
	 "IP type of service of connections (RoCE traffic class, for PFC/ECN); -1: rdma_cm's default"},
	{"RNR_RETRY", "7", RAGG__TP_INT, FIELD(rnr_retry), 0, 7,
	 "RNR retries when a peer's receive queue is empty; 7: retry forever"},
	{"RETRY_COUNT", "7", RAGG__TP_INT, FIELD(retry_count), 0, 7,
	 "transport retries before a silent peer is declared lost"},
	{NULL, NULL, 0, 0, 0, 0, 0, NULL},
};

struct why {
	char *buf;
	size_t len;
};

/* probe() has no device to log through: the message becomes its why. */
static void keep_why(void *arg, const char *msg)
{
	struct why *w = arg;
	if (w->buf && w->len)
		snprintf(w->buf, w->len, "%s", msg);
}

int ragg__verbs_config_read(struct ragg__verbs_config *cfg, char *why, size_t why_len)
{
	struct why w = {.buf = why, .len = why_len};
	return ragg__tp_settings_load("VERBS", ragg__tp_verbs_settings, cfg, sizeof(*cfg), keep_why,
	                              &w);
}
