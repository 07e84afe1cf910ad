#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "bootstrap/kv.h"
#include "clock.h"
#include "log.h"

#include <ragg/ragg.h>

struct ragg__kv {
	int fd;
	unsigned long long seq; /* of the next request */
	unsigned char chal[RAGG_KV_CHALLENGE_BYTES];
	char job_key[128];
	char root[256];
	struct sockaddr_storage local;
	socklen_t local_len;
};

static void set_io_timeout(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int try_connect(const struct addrinfo *ai, int io_ms)
{
	for (; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		set_io_timeout(fd, io_ms);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			return fd;
		}
		close(fd);
	}
	return -1;
}

void ragg__kv_mac(const char *job_key, const unsigned char *chal, const char *line, char *out)
{
	unsigned char k[crypto_auth_KEYBYTES], mac[crypto_auth_BYTES];
	crypto_auth_hmacsha512256_state st;
	crypto_generichash(k, sizeof(k), (const unsigned char *)job_key, strlen(job_key),
	                   (const unsigned char *)"ragg rendezvous", 15);
	crypto_auth_hmacsha512256_init(&st, k, sizeof(k));
	crypto_auth_hmacsha512256_update(&st, chal, RAGG_KV_CHALLENGE_BYTES);
	crypto_auth_hmacsha512256_update(&st, (const unsigned char *)line, strlen(line));
	crypto_auth_hmacsha512256_final(&st, mac);
	sodium_bin2hex(out, 2 * sizeof(mac) + 1, mac, sizeof(mac));
	sodium_memzero(k, sizeof(k));
}

static int read_line(int fd, char *buf, size_t cap)
{
	size_t got = 0;
	while (got + 1 < cap) {
		ssize_t n = recv(fd, buf + got, 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		if (buf[got] == '\n') {
			buf[got] = 0;
			return 0;
		}
		got++;
	}
	return -1;
}

int ragg__kv_connect(const char *root, int timeout_ms, const char *job_key, struct ragg__kv **out)
{
	char host[256], port[32];
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai = NULL;
	uint64_t deadline = ragg__now_ms() + (uint64_t)timeout_ms;
	int rc, sleep_ms = 5;

	if (ragg__split_hostport(root, host, sizeof(host), port, sizeof(port))) {
		ragg__error("RAGG_ROOT=\"%s\": expected host:port", root);
		return RAGG_ERR_CONFIG;
	}
	if ((rc = getaddrinfo(host, port, &hints, &ai))) {
		ragg__error("RAGG_ROOT=\"%s\": cannot resolve: %s", root, gai_strerror(rc));
		return RAGG_ERR_CONFIG;
	}
	struct ragg__kv *kv = calloc(1, sizeof(*kv));
	if (!kv) {
		freeaddrinfo(ai);
		return -ENOMEM;
	}
	/* The root is served by server 0, which may start after us: retry
	 * with a growing pause until the deadline. */
	for (;;) {
		kv->fd = try_connect(ai, timeout_ms);
		if (kv->fd >= 0)
			break;
		if (ragg__now_ms() >= deadline) {
			ragg__error(
			    "rendezvous at %s unreachable for %d ms (it is served by server 0: "
			    "did that process start? is RAGG_ROOT the same everywhere?)",
			    root, timeout_ms);
			freeaddrinfo(ai);
			free(kv);
			return RAGG_ERR_TIMEOUT;
		}
		ragg__sleep_ms(sleep_ms);
		if (sleep_ms < 100)
			sleep_ms *= 2;
	}
	freeaddrinfo(ai);
	/* The server's challenge, which every request's MAC covers. */
	char line[16 + 2 * RAGG_KV_CHALLENGE_BYTES];
	size_t bin_len = 0;
	if (read_line(kv->fd, line, sizeof(line)) || strncmp(line, "CHAL ", 5) ||
	    sodium_hex2bin(kv->chal, sizeof(kv->chal), line + 5, strlen(line + 5), NULL, &bin_len,
	                   NULL) ||
	    bin_len != sizeof(kv->chal)) {
		ragg__error("rendezvous at %s: no challenge (is it a ragg rendezvous of this "
		            "version?)",
		            root);
		close(kv->fd);
		free(kv);
		return RAGG_ERR_PROTO;
	}
	snprintf(kv->job_key, sizeof(kv->job_key), "%s", job_key ? job_key : "");
	kv->local_len = sizeof(kv->local);
	getsockname(kv->fd, (struct sockaddr *)&kv->local, &kv->local_len);
	snprintf(kv->root, sizeof(kv->root), "%s", root);
	*out = kv;
	return 0;
}

void ragg__kv_close(struct ragg__kv *kv)
{
	if (!kv)
		return;
	close(kv->fd);
	sodium_memzero(kv->job_key, sizeof(kv->job_key));
	free(kv);
}

/* "<words> <seq> <mac>\n" into req. */
static void sign(struct ragg__kv *kv, char *req, size_t cap)
{
	char mac[2 * crypto_auth_BYTES + 1];
	size_t n = strlen(req);
	snprintf(req + n, cap - n, " %llu", kv->seq++);
	ragg__kv_mac(kv->job_key, kv->chal, req, mac);
	n = strlen(req);
	snprintf(req + n, cap - n, " %s\n", mac);
}

static int kv_request(struct ragg__kv *kv, const char *req, char *reply, size_t cap)
{
	size_t len = strlen(req), got = 0;
	while (len) {
		ssize_t n = send(kv->fd, req, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto lost;
		req += n;
		len -= (size_t)n;
	}
	for (;;) {
		if (got == cap)
			goto lost;
		ssize_t n = recv(kv->fd, reply + got, cap - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto lost;
		got += (size_t)n;
		char *nl = memchr(reply, '\n', got);
		if (nl) {
			*nl = 0;
			return 0;
		}
	}
lost:
	ragg__error("rendezvous at %s: connection lost", kv->root);
	return RAGG_ERR_PEER_LOST;
}

static int kv_check_word(const char *what, const char *s)
{
	if (!*s || strlen(s) >= RAGG_KV_VALUE_MAX || strpbrk(s, " \n\r\t")) {
		ragg__error("rendezvous: invalid %s \"%s\"", what, s);
		return -EINVAL;
	}
	return 0;
}

int ragg__kv_put(struct ragg__kv *kv, const char *id, const char *key, const char *value)
{
	char req[3 * RAGG_KV_VALUE_MAX + 200], reply[64];
	int rc;
	if ((rc = kv_check_word("identity", id)) || (rc = kv_check_word("key", key)) ||
	    (rc = kv_check_word("value", value)))
		return rc;
	snprintf(req, sizeof(req), "PUT %s %s %s", id, key, value);
	sign(kv, req, sizeof(req));
	if ((rc = kv_request(kv, req, reply, sizeof(reply))))
		return rc;
	if (strcmp(reply, "OK") == 0)
		return 0;
	ragg__error("rendezvous at %s refused \"%s\": %s", kv->root, key, reply);
	return strcmp(reply, "TAKEN") == 0 ? -EEXIST : RAGG_ERR_PROTO;
}

int ragg__kv_get(struct ragg__kv *kv, const char *key, char *value, size_t cap, int timeout_ms)
{
	char req[RAGG_KV_VALUE_MAX + 200], reply[RAGG_KV_VALUE_MAX + 16];
	uint64_t deadline = ragg__now_ms() + (uint64_t)timeout_ms;
	int rc, sleep_ms = 1;
	if ((rc = kv_check_word("key", key)))
		return rc;
	for (;;) {
		snprintf(req, sizeof(req), "GET %s", key);
		sign(kv, req, sizeof(req));
		if ((rc = kv_request(kv, req, reply, sizeof(reply)))) {
			ragg__error("rendezvous: lost while waiting for \"%s\" (server 0 serves "
			            "it: did it exit?)",
			            key);
			return rc;
		}
		if (strncmp(reply, "VAL ", 4) == 0) {
			if (strlen(reply + 4) >= cap)
				return -ENOSPC;
			memcpy(value, reply + 4, strlen(reply + 4) + 1);
			return 0;
		}
		if (strcmp(reply, "NONE") != 0)
			return RAGG_ERR_PROTO;
		if (ragg__now_ms() >= deadline) {
			ragg__error("rendezvous: \"%s\" not published within %d ms (did that "
			            "process start?)",
			            key, timeout_ms);
			return RAGG_ERR_TIMEOUT;
		}
		ragg__sleep_ms(sleep_ms);
		if (sleep_ms < 50)
			sleep_ms *= 2;
	}
}

int ragg__kv_local_host(const struct ragg__kv *kv, char *host, size_t cap)
{
	char buf[INET6_ADDRSTRLEN];
	const struct sockaddr_storage *ss = &kv->local;
	if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, sizeof(buf));
	} else if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a))
			inet_ntop(AF_INET, &a->s6_addr[12], buf, sizeof(buf));
		else
			inet_ntop(AF_INET6, a, buf, sizeof(buf));
	} else {
		return -EAFNOSUPPORT;
	}
	if (strlen(buf) >= cap)
		return -ENOSPC;
	memcpy(host, buf, strlen(buf) + 1);
	return 0;
}
