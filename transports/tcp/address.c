/*
 * Addresses ("host:port", "[v6]:port") and the socket options every
 * connection gets.
 */
#include "config.h"

#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "../util/sockaddr.h"
#include "tcp.h"

static int copy(char *dst, size_t dst_len, const char *src, size_t n)
{
	if (n >= dst_len)
		return -ENAMETOOLONG;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return 0;
}

int ragg__tcp_addr_split(const char *addr, char *host, size_t host_len, char *port, size_t port_len)
{
	const char *colon, *p;
	int rc;

	if (!addr)
		addr = "";
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (!close || (close[1] && close[1] != ':'))
			return -EINVAL;
		rc = copy(host, host_len, addr + 1, (size_t)(close - addr - 1));
		p = close[1] ? close + 2 : "";
	} else {
		colon = strchr(addr, ':');
		if (colon && strchr(colon + 1, ':')) /* a bare IPv6 literal: no port */
			colon = NULL;
		rc = copy(host, host_len, addr, colon ? (size_t)(colon - addr) : strlen(addr));
		p = colon ? colon + 1 : "";
	}
	if (rc)
		return rc;
	for (const char *c = p; *c; c++)
		if (*c < '0' || *c > '9')
			return -EINVAL;
	return copy(port, port_len, p, strlen(p));
}

int ragg__tcp_addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t buf_len)
{
	char host[NI_MAXHOST], serv[NI_MAXSERV];
	int rc = getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
	                     NI_NUMERICHOST | NI_NUMERICSERV);
	if (rc)
		return -EINVAL;
	int n = snprintf(buf, buf_len, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
	return n < 0 || (size_t)n >= buf_len ? -ENAMETOOLONG : 0;
}

void ragg__tcp_addr_iface(const struct sockaddr *sa, char *buf, size_t len)
{
	struct ifaddrs *ifa, *i;

	snprintf(buf, len, ragg__tp_sa_is_wildcard(sa) ? "any" : "tcp");
	if (ragg__tp_sa_is_wildcard(sa) || getifaddrs(&ifa) < 0)
		return;
	for (i = ifa; i; i = i->ifa_next) {
		if (i->ifa_addr && ragg__tp_sa_same_ip(i->ifa_addr, sa)) {
			snprintf(buf, len, "%s", i->ifa_name);
			break;
		}
	}
	freeifaddrs(ifa);
}

int ragg__tcp_addr_advertise(struct ragg__tcp_dev *dev, int family, char *buf, size_t len)
{
	struct ifaddrs *ifa, *i;
	int rc = -EADDRNOTAVAIL;

	if (getifaddrs(&ifa) < 0)
		return -errno;
	for (i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != family || !(i->ifa_flags & IFF_UP))
			continue;
		if (dev->cfg.iface[0] ? strcmp(i->ifa_name, dev->cfg.iface) != 0
		                      : (i->ifa_flags & IFF_LOOPBACK) != 0)
			continue;
		if (family == AF_INET6 &&
		    IN6_IS_ADDR_LINKLOCAL(&((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr))
			continue;
		socklen_t sl =
		    family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
		char host[NI_MAXHOST];
		if (getnameinfo(i->ifa_addr, sl, host, sizeof(host), NULL, 0, NI_NUMERICHOST))
			continue;
		rc = snprintf(buf, len, "%s", host) < (int)len ? 0 : -ENAMETOOLONG;
		snprintf(dev->device, sizeof(dev->device), "%s", i->ifa_name);
		break;
	}
	freeifaddrs(ifa);
	if (rc == -EADDRNOTAVAIL && dev->cfg.iface[0]) {
		ragg__tcp_error(dev, "RAGG_TCP_IFACE=%s: no usable address on that interface",
		                dev->cfg.iface);
		return rc;
	}
	if (rc == -EADDRNOTAVAIL) {
		/* A host with loopback only: peers can only be local anyway. */
		snprintf(buf, len, "%s", family == AF_INET ? "127.0.0.1" : "::1");
		snprintf(dev->device, sizeof(dev->device), "lo");
		rc = 0;
	}
	return rc;
}

static int setopt(struct ragg__tcp_dev *dev, int fd, int level, int name, int value,
                  const char *what)
{
	if (setsockopt(fd, level, name, &value, sizeof(value)) == 0)
		return 0;
	int rc = -errno;
	ragg__tcp_error(dev, "setsockopt(%s=%d): %s", what, value, strerror(-rc));
	return rc;
}

/* A buffer size as asked: past net.core.[rw]mem_max only with
 * CAP_NET_ADMIN (the FORCE option), else as much as the kernel allows, and
 * the log says so once. */
static int set_buf(struct ragg__tcp_dev *dev, int fd, int opt, int force, size_t want,
                   const char *what)
{
	int v = want > INT32_MAX / 2 ? INT32_MAX / 2 : (int)want;
	if (setsockopt(fd, SOL_SOCKET, force, &v, sizeof(v)) == 0)
		return 0;
	int rc = setopt(dev, fd, SOL_SOCKET, opt, v, what);
	int got = 0;
	socklen_t len = sizeof(got);
	if (!rc && !dev->buf_warned && getsockopt(fd, SOL_SOCKET, opt, &got, &len) == 0 &&
	    (size_t)got < want) {
		/* The kernel reports twice what it was given. */
		ragg__tcp_warn(dev, "%s of %zu capped to %d by net.core.%s_max", what, want,
		               got / 2, opt == SO_SNDBUF ? "wmem" : "rmem");
		dev->buf_warned = true;
	}
	return rc;
}

/* Buffer sizes go on before connect() or listen() so the window scale the
 * handshake negotiates can use them; accepted sockets inherit the
 * listener's. */
int ragg__tcp_sock_setup(struct ragg__tcp_dev *dev, int fd, bool data)
{
	const struct ragg__tcp_config *c = &dev->cfg;
	int rc = 0;

	if (c->sndbuf)
		rc = set_buf(dev, fd, SO_SNDBUF, SO_SNDBUFFORCE, c->sndbuf, "SO_SNDBUF");
	if (!rc && c->rcvbuf)
		rc = set_buf(dev, fd, SO_RCVBUF, SO_RCVBUFFORCE, c->rcvbuf, "SO_RCVBUF");
	if (!rc && data && c->nodelay)
		rc = setopt(dev, fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
	return rc;
}

/* A peer on this host reaches us from one of our own addresses: Linux
 * sends local traffic from the address it goes to, or over 127/8. */
static bool peer_is_local(int fd)
{
	struct sockaddr_storage me, peer;
	socklen_t ml = sizeof(me), pl = sizeof(peer);
	if (getsockname(fd, (struct sockaddr *)&me, &ml) < 0 ||
	    getpeername(fd, (struct sockaddr *)&peer, &pl) < 0)
		return false;
	const struct sockaddr *p = (struct sockaddr *)&peer;
	return ragg__tp_sa_is_loopback(p) || ragg__tp_sa_is_mapped_loopback(p) ||
	       ragg__tp_sa_same_ip((struct sockaddr *)&me, p);
}

/* Between processes of one host the bytes in flight are copied twice by
 * the CPUs alone, and both copies run at cache speed only while what sits
 * in the socket fits in cache: autotuning grows the send buffer to
 * megabytes and halves large-write throughput. A connection to a peer on
 * this host therefore gets a small send buffer, unless one was set. */
void ragg__tcp_sock_established(struct ragg__tcp_dev *dev, int fd)
{
	if (dev->cfg.sndbuf || !dev->cfg.local_sndbuf || !peer_is_local(fd))
		return;
	if (set_buf(dev, fd, SO_SNDBUF, SO_SNDBUFFORCE, dev->cfg.local_sndbuf, "SO_SNDBUF") == 0)
		ragg__tcp_debug(dev, "peer on this host: send buffer %zu", dev->cfg.local_sndbuf);
}
