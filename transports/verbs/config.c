/*
 * RAGG_VERBS_* settings: one table, read once per open(). Sizes accept k, m
 * and g suffixes (powers of 1024) like the core's own settings.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verbs.h"

#define CFG(field) offsetof(struct ragg__verbs_config, field)

const struct ragg__verbs_setting ragg__verbs_settings[] = {
	{"RAGG_VERBS_DEVICE", "",
	 "RDMA device to use (e.g. mlx5_0, rxe0); empty: the first with an active port",
	 RAGG__VERBS_SET_STR, CFG(device), 0, 0},
	{"RAGG_VERBS_PORT", "0", "port of the device; 0: the first active port",
	 RAGG__VERBS_SET_LONG, CFG(port), 0, 255},
	{"RAGG_VERBS_GID_INDEX", "-1",
	 "GID whose address a listener without a host advertises and connections leave from; "
	 "-1: the first RoCE v2 IPv4 GID (rdma_cm then picks the GID of that address)",
	 RAGG__VERBS_SET_LONG, CFG(gid_index), -1, 65535},
	{"RAGG_VERBS_QUEUE_DEPTH", "128",
	 "send work requests in flight per endpoint before write_imm/send say try again",
	 RAGG__VERBS_SET_LONG, CFG(queue_depth), 4, 32768},
	{"RAGG_VERBS_SRQ_DEPTH", "0",
	 "receives posted on the shared receive queue (each write with immediate uses one); "
	 "0: max(1024, queue depth x max peers), capped by the device",
	 RAGG__VERBS_SET_LONG, CFG(srq_depth), 0, 1 << 20},
	{"RAGG_VERBS_CQ_DEPTH", "0",
	 "completion queue size; 0: SRQ depth + queue depth x max peers (grown as endpoints come)",
	 RAGG__VERBS_SET_LONG, CFG(cq_depth), 0, 1 << 22},
	{"RAGG_VERBS_INLINE", "220",
	 "writes and sends up to this many bytes go inline (the device may allow less)",
	 RAGG__VERBS_SET_LONG, CFG(inline_size), 0, 4096},
	{"RAGG_VERBS_SIGNAL_INTERVAL", "16",
	 "request a completion every this many unsignalled work requests",
	 RAGG__VERBS_SET_LONG, CFG(signal_interval), 1, 32768},
	{"RAGG_VERBS_POLL_BATCH", "16", "completions taken per ibv_poll_cq call",
	 RAGG__VERBS_SET_LONG, CFG(poll_batch), 1, 256},
	{"RAGG_VERBS_MAX_MSG_SIZE", "0",
	 "largest payload of one work request; longer writes are split; 0: the port's max_msg_sz",
	 RAGG__VERBS_SET_SIZE, CFG(max_msg_size), 0, 0},
	{"RAGG_VERBS_BOUNCE_SIZE", "1m",
	 "per-endpoint copy buffer for writes from unregistered memory longer than inline data "
	 "(the largest such write)",
	 RAGG__VERBS_SET_SIZE, CFG(bounce_size), 0, 0},
	{"RAGG_VERBS_RESOLVE_TIMEOUT_MS", "2000", "rdma_cm address and route resolution timeout",
	 RAGG__VERBS_SET_LONG, CFG(resolve_timeout_ms), 1, 600000},
	{"RAGG_VERBS_TOS", "-1",
	 "IP type of service of connections (RoCE traffic class, for PFC/ECN); -1: rdma_cm's default",
	 RAGG__VERBS_SET_LONG, CFG(tos), -1, 255},
	{"RAGG_VERBS_RNR_RETRY", "7",
	 "RNR retries when a peer's receive queue is empty; 7: retry forever",
	 RAGG__VERBS_SET_LONG, CFG(rnr_retry), 0, 7},
	{"RAGG_VERBS_RETRY_COUNT", "7",
	 "transport retries before a silent peer is declared lost",
	 RAGG__VERBS_SET_LONG, CFG(retry_count), 0, 7},
	{NULL, NULL, NULL, 0, 0, 0, 0},
};

static int parse_size(const char *text, size_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno || end == text || text[0] == '-')
		return -1;
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'b' || *end == 'B')
		end += (*end == 'i' && (end[1] == 'B' || end[1] == 'b')) ? 2 : 1;
	if (*end || (shift && v > (~0ull >> shift)))
		return -1;
	*out = (size_t)(v << shift);
	return 0;
}

int ragg__verbs_config_read(struct ragg__verbs_config *cfg, char *why, size_t why_len)
{
	struct ragg__verbs_config c;
	memset(&c, 0, sizeof(c));
	for (const struct ragg__verbs_setting *s = ragg__verbs_settings; s->name; s++) {
		const char *env = getenv(s->name);
		const char *text = env && *env ? env : s->def;
		char *field = (char *)&c + s->offset;
		if (s->kind == RAGG__VERBS_SET_STR) {
			size_t cap = sizeof(c.device);
			if (strlen(text) >= cap) {
				snprintf(why, why_len, "%s=%s: longer than %zu characters", s->name,
				         text, cap - 1);
				return RAGG_ERR_CONFIG;
			}
			strcpy(field, text);
		} else if (s->kind == RAGG__VERBS_SET_SIZE) {
			size_t v;
			if (parse_size(text, &v) < 0) {
				snprintf(why, why_len, "%s=%s: not a size (bytes, or with k/m/g)",
				         s->name, text);
				return RAGG_ERR_CONFIG;
			}
			memcpy(field, &v, sizeof(v));
		} else {
			char *end;
			errno = 0;
			long v = strtol(text, &end, 10);
			if (errno || end == text || *end || v < s->min || v > s->max) {
				snprintf(why, why_len, "%s=%s: not an integer in [%ld, %ld]", s->name,
				         text, s->min, s->max);
				return RAGG_ERR_CONFIG;
			}
			memcpy(field, &v, sizeof(v));
		}
	}
	*cfg = c;
	return 0;
}
