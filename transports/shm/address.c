/*
 * Addresses. A listener is an abstract unix socket "\0ragg-shm/<name>",
 * advertised as "shm:<host-id>:<name>". Abstract sockets belong to a
 * network namespace, and shared memory needs the same kernel, so the host
 * id hashes the boot id with the network namespace's inode: two processes
 * with the same host id can reach each other's listeners, and nobody else
 * can. reachable() is that comparison.
 *
 * For tools that think in "host:port" (ragg-perf), listen() on a non-zero
 * port takes the port as the name, and connect() accepts "host:port" when
 * host is this machine.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "../util/sockaddr.h"
#include "shm.h"

#define PREFIX       "shm:"
#define NAME_MAX_LEN 64

int ragg__shm_host_id(char id[17], char *why, size_t why_len)
{
	char boot[64] = "";
	struct stat ns;
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;
		if (why && why_len)
			snprintf(why, why_len,
			         "/proc/sys/kernel/random/boot_id: %s (is /proc mounted?)",
			         strerror(-rc));
		return rc;
	}
	ssize_t n = read(fd, boot, sizeof(boot) - 1);
	close(fd);
	if (n <= 0) {
		if (why && why_len)
			snprintf(why, why_len, "/proc/sys/kernel/random/boot_id: cannot read it");
		return -EIO;
	}
	boot[n] = '\0';
	if (stat("/proc/self/ns/net", &ns) < 0) {
		int rc = -errno;
		if (why && why_len)
			snprintf(why, why_len, "/proc/self/ns/net: %s", strerror(-rc));
		return rc;
	}
	char text[128];
	int len = snprintf(text, sizeof(text), "%s/%llx/%llx", boot, (unsigned long long)ns.st_dev,
	                   (unsigned long long)ns.st_ino);
	uint8_t h[8];
	crypto_generichash(h, sizeof(h), (const uint8_t *)text, (size_t)len, NULL, 0);
	for (int i = 0; i < 8; i++)
		snprintf(id + 2 * i, 3, "%02x", h[i]);
	return 0;
}

static bool name_ok(const char *s, size_t n)
{
	if (!n || n > NAME_MAX_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

void ragg__shm_addr_abstract(const char *name, struct sockaddr_un *sa, socklen_t *len)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	/* sun_path[0] stays 0: the abstract namespace, gone with the socket. */
	int n = snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1, "ragg-shm/%s", name);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* "host:port", "[v6]:port": host and port (digits), both non-empty. */
static int split_host_port(const char *addr, char *host, size_t host_len, char *port,
                           size_t port_len)
{
	const char *h, *p;
	size_t hn;

	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (!close || close[1] != ':')
			return -EINVAL;
		h = addr + 1;
		hn = (size_t)(close - h);
		p = close + 2;
	} else {
		const char *colon = strrchr(addr, ':');
		if (!colon || strchr(addr, ':') != colon)
			return -EINVAL;
		h = addr;
		hn = (size_t)(colon - addr);
		p = colon + 1;
	}
	if (!*p || strlen(p) >= port_len || hn >= host_len)
		return -EINVAL;
	for (const char *c = p; *c; c++)
		if (*c < '0' || *c > '9')
			return -EINVAL;
	memcpy(host, h, hn);
	host[hn] = '\0';
	strcpy(port, p);
	return 0;
}

/* Every address host resolves to is loopback or one of our interfaces'. */
static bool host_is_local(const char *host)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	struct addrinfo *res, *ai;
	struct ifaddrs *ifa = NULL, *i;
	bool local = true;

	if (!*host || getaddrinfo(host, NULL, &hints, &res))
		return false;
	for (ai = res; ai && local; ai = ai->ai_next) {
		if (ragg__tp_sa_is_loopback(ai->ai_addr))
			continue;
		if (!ifa && getifaddrs(&ifa) < 0) {
			local = false;
			break;
		}
		bool found = false;
		for (i = ifa; i && !found; i = i->ifa_next)
			found = i->ifa_addr && ragg__tp_sa_same_ip(i->ifa_addr, ai->ai_addr);
		local = found;
	}
	if (ifa)
		freeifaddrs(ifa);
	freeaddrinfo(res);
	return local;
}

int ragg__shm_addr_resolve(struct ragg__shm_dev *dev, const char *addr, struct sockaddr_un *sa,
                           socklen_t *len)
{
	char host[NI_MAXHOST], port[NI_MAXSERV], name[NAME_MAX_LEN + 1];

	if (!strncmp(addr, PREFIX, strlen(PREFIX))) {
		const char *id = addr + strlen(PREFIX);
		const char *colon = strchr(id, ':');
		if (!colon || colon - id != 16 || !name_ok(colon + 1, strlen(colon + 1))) {
			ragg__shm_error(
			    dev, "connect: bad address \"%s\" (want shm:<host-id>:<name>)", addr);
			return -EINVAL;
		}
		if (strncmp(id, dev->host_id, 16) != 0) {
			ragg__shm_error(
			    dev,
			    "connect %s: another host or network namespace (ours is %s); "
			    "shm reaches only peers that share both",
			    addr, dev->host_id);
			return -EHOSTUNREACH;
		}
		ragg__shm_addr_abstract(colon + 1, sa, len);
		return 0;
	}
	if (split_host_port(addr, host, sizeof(host), port, sizeof(port)) || strlen(port) > 5) {
		ragg__shm_error(dev, "connect: bad address \"%s\" (want shm:<host-id>:<name>)",
		                addr);
		return -EINVAL;
	}
	if (!host_is_local(host)) {
		ragg__shm_error(dev,
		                "connect %s: %s is not this host; shm reaches only local peers",
		                addr, host);
		return -EHOSTUNREACH;
	}
	snprintf(name, sizeof(name), "p%lu", strtoul(port, NULL, 10));
	ragg__shm_addr_abstract(name, sa, len);
	return 0;
}

/* The port of "host:port", "[v6]:port", ":port", "host" or "[v6]"; 0 when
 * there is none. */
static int listen_port(const char *hp, unsigned long *port)
{
	const char *p;

	*port = 0;
	if (!hp || !*hp)
		return 0;
	if (hp[0] == '[') {
		const char *close = strchr(hp, ']');
		if (!close || (close[1] && close[1] != ':'))
			return -EINVAL;
		if (!close[1])
			return 0;
		p = close + 2;
	} else {
		const char *colon = strchr(hp, ':');
		if (!colon || strchr(colon + 1, ':')) /* no port, or a bare IPv6 literal */
			return 0;
		p = colon + 1;
	}
	if (strlen(p) > 5)
		return -EINVAL;
	for (const char *c = p; *c; c++)
		if (*c < '0' || *c > '9')
			return -EINVAL;
	*port = strtoul(p, NULL, 10);
	return *port > 65535 ? -EINVAL : 0;
}

int ragg__shm_addr_listen_name(struct ragg__shm_dev *dev, const char *host_port, char *name,
                               size_t len)
{
	unsigned long port;

	/* The host is ignored: every peer that can reach us is on it. */
	if (listen_port(host_port, &port)) {
		ragg__shm_error(dev, "listen: bad address \"%s\"", host_port);
		return -EINVAL;
	}
	if (port) {
		snprintf(name, len, "p%lu", port);
		return 0;
	}
	uint8_t r[8];
	randombytes_buf(r, sizeof(r));
	for (int i = 0; i < 8 && 2 * (size_t)i + 2 < len; i++)
		snprintf(name + 2 * i, 3, "%02x", r[i]);
	return 0;
}

int ragg__shm_reachable(struct ragg_tp_dev *d, const char *addr)
{
	struct ragg__shm_dev *dev = ragg__shm_dev(d);
	size_t n = strlen(PREFIX);
	if (!addr || strncmp(addr, PREFIX, n) != 0 || strlen(addr) < n + 17 || addr[n + 16] != ':')
		return 0;
	return strncmp(addr + n, dev->host_id, 16) == 0 &&
	       name_ok(addr + n + 17, strlen(addr + n + 17));
}
