/*
 * A readable inventory of the host's RDMA devices for ragg-info: what
 * `ibv_devinfo -v` and `rdma link` would tell, restricted to what decides
 * whether and how ragg can use a port. Read-only; opens each device only
 * for the duration of the call.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verbs.h"

struct sbuf {
	char *p;
	size_t len, off;
};

__attribute__((format(printf, 2, 3))) static void put(struct sbuf *b, const char *fmt, ...)
{
	if (b->off >= b->len)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b->p + b->off, b->len - b->off, fmt, ap);
	va_end(ap);
	if (n > 0)
		b->off += (size_t)n < b->len - b->off ? (size_t)n : b->len - b->off - 1;
}

static int read_int_file(const char *path, int *v)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	int ok = fscanf(f, "%d", v) == 1;
	fclose(f);
	return ok ? 0 : -1;
}

int ragg__verbs_numa_node(const char *device)
{
	char path[512];
	int node;
	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/device/numa_node", device);
	if (read_int_file(path, &node) == 0)
		return node;
	/* Soft-RoCE and other software devices have no bus device of their
	 * own; their net device's is the one that counts. */
	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/1/gid_attrs/ndevs/0", device);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char ndev[IF_NAMESIZE + 1] = "";
	int ok = fscanf(f, "%16s", ndev) == 1;
	fclose(f);
	if (!ok)
		return -1;
	snprintf(path, sizeof(path), "/sys/class/net/%s/device/numa_node", ndev);
	return read_int_file(path, &node) == 0 ? node : -1;
}

static const char *phys_state_str(uint8_t s)
{
	static const char *const names[] = {"?",        "SLEEP",   "POLLING",        "DISABLED",
	                                    "TRAINING", "LINK_UP", "ERROR_RECOVERY", "PHY_TEST"};
	return s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

static const char *link_layer_str(uint8_t ll)
{
	return ll == IBV_LINK_LAYER_ETHERNET     ? "Ethernet (RoCE)"
	       : ll == IBV_LINK_LAYER_INFINIBAND ? "InfiniBand"
	                                         : "unspecified";
}

/* Per-lane rate in Gb/s times lanes, from ibv_port_attr's encodings. */
static void speed_str(const struct ibv_port_attr *pa, char *buf, size_t len)
{
	double lane;
	switch (pa->active_speed) {
	case 1: lane = 2.5; break;
	case 2: lane = 5; break;
	case 4:
	case 8: lane = 10; break;
	case 16: lane = 14; break;
	case 32: lane = 25; break;
	case 64: lane = 50; break;
	case 128: lane = 100; break;
	default: lane = 0; break;
	}
	int lanes;
	switch (pa->active_width) {
	case 1: lanes = 1; break;
	case 2: lanes = 4; break;
	case 4: lanes = 8; break;
	case 8: lanes = 12; break;
	case 16: lanes = 2; break;
	default: lanes = 0; break;
	}
	if (lane > 0 && lanes > 0)
		snprintf(buf, len, "%g Gb/s (%dx %g)", lane * lanes, lanes, lane);
	else
		snprintf(buf, len, "unknown speed");
}

static const char *gid_type_str(uint32_t t)
{
	return t == IBV_GID_TYPE_IB        ? "IB"
	       : t == IBV_GID_TYPE_ROCE_V1 ? "RoCE v1"
	       : t == IBV_GID_TYPE_ROCE_V2 ? "RoCE v2"
	                                   : "?";
}

static void describe_gids(struct sbuf *b, struct ibv_context *ctx, uint8_t port, int tbl_len)
{
	for (int i = 0; i < tbl_len; i++) {
		struct ibv_gid_entry e;
		if (ibv_query_gid_ex(ctx, port, (uint32_t)i, &e, 0) != 0)
			continue;
		bool zero = true;
		for (int k = 0; k < 16; k++)
			zero = zero && !e.gid.raw[k];
		if (zero)
			continue;
		char txt[INET6_ADDRSTRLEN], ndev[IF_NAMESIZE] = "";
		inet_ntop(AF_INET6, e.gid.raw, txt, sizeof(txt));
		if (e.ndev_ifindex && !if_indextoname(e.ndev_ifindex, ndev))
			snprintf(ndev, sizeof(ndev), "ifindex %u", e.ndev_ifindex);
		put(b, "      gid %-3d %-40s %-8s%s%s\n", i, txt, gid_type_str(e.gid_type),
		    ndev[0] ? " " : "", ndev);
	}
}

static void describe_device(struct sbuf *b, struct ibv_device *d)
{
	const char *name = ibv_get_device_name(d);
	struct ibv_context *ctx = ibv_open_device(d);
	if (!ctx) {
		put(b, "  %s: cannot open (%s)\n", name, strerror(errno));
		return;
	}
	struct ibv_device_attr da;
	if (ibv_query_device(ctx, &da)) {
		put(b, "  %s: cannot query (%s)\n", name, strerror(errno));
		ibv_close_device(ctx);
		return;
	}
	int node = ragg__verbs_numa_node(name);
	char numa[32];
	if (node >= 0)
		snprintf(numa, sizeof(numa), "%d", node);
	else
		snprintf(numa, sizeof(numa), "unknown");
	put(b, "  %s: %s, NUMA node %s, firmware %s, %d port%s\n", name,
	    ibv_node_type_str(d->node_type), numa, da.fw_ver[0] ? da.fw_ver : "-", da.phys_port_cnt,
	    da.phys_port_cnt == 1 ? "" : "s");
	for (uint8_t p = 1; p <= da.phys_port_cnt; p++) {
		struct ibv_port_attr pa;
		if (ibv_query_port(ctx, p, &pa)) {
			put(b, "    port %u: cannot query (%s)\n", p, strerror(errno));
			continue;
		}
		char speed[48];
		speed_str(&pa, speed, sizeof(speed));
		put(b, "    port %u: %s (%s), %s, active MTU %d, %s, max message %u bytes\n", p,
		    ragg__verbs_port_state_str(pa.state), phys_state_str(pa.phys_state),
		    link_layer_str(pa.link_layer), 128 << pa.active_mtu, speed, pa.max_msg_sz);
		describe_gids(b, ctx, p, pa.gid_tbl_len);
	}
	ibv_close_device(ctx);
}

int ragg__verbs_describe(char *buf, size_t len)
{
	if (!buf || !len)
		return -EINVAL;
	struct sbuf b = {.p = buf, .len = len, .off = 0};
	buf[0] = '\0';
	int n = 0;
	struct ibv_device **devs = ibv_get_device_list(&n);
	if (!devs) {
		put(&b, "  none: RDMA is not supported here (%s)\n", strerror(errno));
		return 0;
	}
	if (n == 0)
		put(&b, "  none found (no RDMA driver loaded, no Soft-RoCE device)\n");
	for (int i = 0; i < n; i++)
		describe_device(&b, devs[i]);
	ibv_free_device_list(devs);
	return 0;
}
