/*
 * Endpoint addresses. rdma_cm addresses RDMA ports by IP address (RoCE: the
 * address behind a GID; InfiniBand: the IPoIB interface), so "host:port" is
 * the same printable form the tcp transport uses.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <stdio.h>
#include <string.h>

#include "../util/sockaddr.h"
#include "verbs.h"

int ragg__verbs_addr_split(const char *addr, char *host, size_t host_len, char *port,
                           size_t port_len)
{
	const char *h = addr, *p = NULL;
	size_t hl;
	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');
		if (!end || (end[1] && end[1] != ':'))
			return -EINVAL;
		h = addr + 1;
		hl = (size_t)(end - h);
		p = end[1] ? end + 2 : NULL;
	} else {
		const char *c = strchr(addr, ':');
		if (c && strchr(c + 1, ':')) { /* a bare IPv6 address */
			hl = strlen(addr);
		} else {
			hl = c ? (size_t)(c - addr) : strlen(addr);
			p = c ? c + 1 : NULL;
		}
	}
	if (hl >= host_len || (p && strlen(p) >= port_len))
		return -ENAMETOOLONG;
	memcpy(host, h, hl);
	host[hl] = '\0';
	snprintf(port, port_len, "%s", p ? p : "");
	return 0;
}

int ragg__verbs_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
	char h[INET6_ADDRSTRLEN];
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)sa;
		inet_ntop(AF_INET, &s->sin_addr, h, sizeof(h));
		snprintf(buf, len, "%s:%u", h, ntohs(s->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)sa;
		inet_ntop(AF_INET6, &s->sin6_addr, h, sizeof(h));
		snprintf(buf, len, "[%s]:%u", h, ntohs(s->sin6_port));
	} else {
		snprintf(buf, len, "(family %d)", sa->sa_family);
		return -EAFNOSUPPORT;
	}
	return 0;
}

int ragg__verbs_addr_resolve(const char *host, const char *port, struct sockaddr_storage *ss)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	if (!host[0])
		hints.ai_flags |= AI_PASSIVE;
	int g = getaddrinfo(host[0] ? host : NULL, port[0] ? port : "0", &hints, &res);
	if (g != 0)
		return g == EAI_NONAME || g == EAI_NODATA ? -EHOSTUNREACH
		       : g == EAI_SYSTEM                  ? -errno
		                                          : -EINVAL;
	/* Prefer IPv4: every RoCE deployment has it, IPv6 GIDs are rarer. */
	const struct addrinfo *pick = res;
	for (const struct addrinfo *a = res; a; a = a->ai_next)
		if (a->ai_family == AF_INET) {
			pick = a;
			break;
		}
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, pick->ai_addr, pick->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

static bool gid_is_v4(const union ibv_gid *g)
{
	static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	return memcmp(g->raw, prefix, sizeof(prefix)) == 0;
}

static bool gid_is_zero(const union ibv_gid *g)
{
	for (int i = 0; i < 16; i++)
		if (g->raw[i])
			return false;
	return true;
}

static void gid_to_addr(const union ibv_gid *g, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (gid_is_v4(g)) {
		struct sockaddr_in *s = (void *)ss;
		s->sin_family = AF_INET;
		memcpy(&s->sin_addr, g->raw + 12, 4);
	} else {
		struct sockaddr_in6 *s = (void *)ss;
		s->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, g->raw, 16);
	}
}

/* InfiniBand GIDs carry no IP address; the IPoIB interface does. */
static int ipoib_addr(struct sockaddr_storage *ss)
{
	struct ifaddrs *ifa = NULL;
	if (getifaddrs(&ifa) < 0)
		return -errno;
	int rc = -EADDRNOTAVAIL;
	for (struct ifaddrs *a = ifa; a && rc; a = a->ifa_next) {
		if (!a->ifa_addr || a->ifa_addr->sa_family != AF_PACKET ||
		    ((struct sockaddr_ll *)(void *)a->ifa_addr)->sll_hatype != ARPHRD_INFINIBAND)
			continue;
		for (struct ifaddrs *b = ifa; b; b = b->ifa_next)
			if (b->ifa_addr && b->ifa_addr->sa_family == AF_INET &&
			    strcmp(a->ifa_name, b->ifa_name) == 0 && (b->ifa_flags & IFF_UP)) {
				memset(ss, 0, sizeof(*ss));
				memcpy(ss, b->ifa_addr, sizeof(struct sockaddr_in));
				rc = 0;
				break;
			}
	}
	freeifaddrs(ifa);
	return rc;
}

int ragg__verbs_addr_local(struct ragg__verbs_dev *dev, struct sockaddr_storage *ss)
{
	if (dev->pattr.link_layer != IBV_LINK_LAYER_ETHERNET) {
		int rc = ipoib_addr(ss);
		if (rc)
			ragg__verbs_error(
			    dev,
			    "%s: no IPoIB interface with an IPv4 address for rdma_cm; "
			    "give the listener a host",
			    dev->name);
		return rc;
	}
	if (dev->cfg.gid_index >= 0) {
		struct ibv_gid_entry e;
		if (ibv_query_gid_ex(dev->ctx, dev->port, (uint32_t)dev->cfg.gid_index, &e, 0) !=
		        0 ||
		    gid_is_zero(&e.gid)) {
			ragg__verbs_error(dev,
			                  "%s port %u: GID index %ld (RAGG_VERBS_GID_INDEX) is not "
			                  "valid; see `ibv_devinfo -v -d %s` or `ragg-info`",
			                  dev->name, dev->port, dev->cfg.gid_index, dev->name);
			return -EADDRNOTAVAIL;
		}
		gid_to_addr(&e.gid, ss);
		return 0;
	}
	/* RoCE v2 with IPv4 first (routable, what rdma_cm prefers), then any
	 * IP-based GID that is not link-local. */
	int best = -1, best_score = 0;
	union ibv_gid best_gid;
	for (int i = 0; i < dev->pattr.gid_tbl_len; i++) {
		struct ibv_gid_entry e;
		if (ibv_query_gid_ex(dev->ctx, dev->port, (uint32_t)i, &e, 0) != 0 ||
		    gid_is_zero(&e.gid))
			continue;
		bool link_local = e.gid.raw[0] == 0xfe && (e.gid.raw[1] & 0xc0) == 0x80;
		int score = gid_is_v4(&e.gid) ? (e.gid_type == IBV_GID_TYPE_ROCE_V2 ? 4 : 3)
		            : link_local      ? 0
		                              : (e.gid_type == IBV_GID_TYPE_ROCE_V2 ? 2 : 1);
		if (score > best_score) {
			best = i;
			best_score = score;
			best_gid = e.gid;
		}
	}
	if (best < 0) {
		ragg__verbs_error(dev,
		                  "%s port %u has no GID with an IP address: give its net "
		                  "device an address (`ip addr add ... dev <netdev>`)",
		                  dev->name, dev->port);
		return -EADDRNOTAVAIL;
	}
	gid_to_addr(&best_gid, ss);
	return 0;
}

int ragg__verbs_addr_unloop(struct ragg__verbs_dev *dev, struct sockaddr_storage *ss)
{
	if (!ragg__tp_sa_is_loopback((const struct sockaddr *)ss))
		return 0;
	uint16_t port = ss->ss_family == AF_INET ? ((struct sockaddr_in *)ss)->sin_port
	                                         : ((struct sockaddr_in6 *)ss)->sin6_port;
	struct sockaddr_storage local;
	int rc = ragg__verbs_addr_local(dev, &local);
	if (rc)
		return rc;
	if (local.ss_family == AF_INET)
		((struct sockaddr_in *)&local)->sin_port = port;
	else
		((struct sockaddr_in6 *)&local)->sin6_port = port;
	*ss = local;
	return 1;
}
