/*
 * The rendezvous server: one thread, poll(2) over the listening socket and
 * its clients. Requests are single lines:
 *   PUT <key> <value>\n  ->  OK\n
 *   GET <key>\n          ->  VAL <value>\n | NONE\n
 * Keys and values are printable without spaces. A client that sends
 * something else is dropped; the others carry on.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../transports/util/accept.h"
#include "bootstrap/kv.h"
#include "clock.h"
#include "log.h"

#include <ragg/ragg.h>

#define KV_MAX_CLIENTS 4096
#define KV_LINE_MAX    (RAGG_KV_VALUE_MAX + 128)

struct kv_entry {
	char *key, *value;
};

struct kv_client {
	int fd;
	size_t len;
	char line[KV_LINE_MAX];
};

struct ragg__kv_server {
	int listen_fd;
	int stop_pipe[2];
	pthread_t thread;
	struct kv_client *clients;
	int nclients;
	struct ragg__tp_accept_guard accept_guard; /* EMFILE/ENFILE on listen_fd */
	struct kv_entry *entries;
	size_t nentries, capentries;
};

static const char *kv_lookup(struct ragg__kv_server *s, const char *key)
{
	for (size_t i = 0; i < s->nentries; i++)
		if (strcmp(s->entries[i].key, key) == 0)
			return s->entries[i].value;
	return NULL;
}

static int kv_store(struct ragg__kv_server *s, const char *key, const char *value)
{
	for (size_t i = 0; i < s->nentries; i++)
		if (strcmp(s->entries[i].key, key) == 0) {
			char *v = strdup(value);
			if (!v)
				return -ENOMEM;
			free(s->entries[i].value);
			s->entries[i].value = v;
			return 0;
		}
	if (s->nentries == s->capentries) {
		size_t cap = s->capentries ? 2 * s->capentries : 64;
		struct kv_entry *e = realloc(s->entries, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		s->entries = e;
		s->capentries = cap;
	}
	char *k = strdup(key), *v = strdup(value);
	if (!k || !v) {
		free(k);
		free(v);
		return -ENOMEM;
	}
	s->entries[s->nentries++] = (struct kv_entry){ k, v };
	return 0;
}

static int send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* 0 to keep the client, -1 to drop it. */
static int kv_handle_line(struct ragg__kv_server *s, int fd, char *line)
{
	char reply[KV_LINE_MAX + 8];
	char *save, *cmd = strtok_r(line, " ", &save);
	char *key = strtok_r(NULL, " ", &save);
	if (!cmd || !key)
		return -1;
	if (strcmp(cmd, "PUT") == 0) {
		char *value = strtok_r(NULL, " ", &save);
		if (!value || strtok_r(NULL, " ", &save) || strlen(value) >= RAGG_KV_VALUE_MAX)
			return -1;
		if (kv_store(s, key, value))
			return -1;
		return send_all(fd, "OK\n", 3);
	}
	if (strcmp(cmd, "GET") == 0 && !strtok_r(NULL, " ", &save)) {
		const char *v = kv_lookup(s, key);
		int n = v ? snprintf(reply, sizeof(reply), "VAL %s\n", v)
		          : snprintf(reply, sizeof(reply), "NONE\n");
		return send_all(fd, reply, (size_t)n);
	}
	return -1;
}

static int kv_client_readable(struct ragg__kv_server *s, struct kv_client *c)
{
	ssize_t n = recv(c->fd, c->line + c->len, sizeof(c->line) - c->len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return -1;
	c->len += (size_t)n;
	for (;;) {
		char *nl = memchr(c->line, '\n', c->len);
		if (!nl) {
			if (c->len == sizeof(c->line)) {
				ragg__warn(
				    "rendezvous: dropping a client with an over-long request");
				return -1;
			}
			return 0;
		}
		*nl = 0;
		size_t used = (size_t)(nl - c->line) + 1;
		if (kv_handle_line(s, c->fd, c->line)) {
			ragg__warn("rendezvous: dropping a client after a malformed request");
			return -1;
		}
		memmove(c->line, c->line + used, c->len - used);
		c->len -= used;
	}
}

static void *kv_thread(void *arg)
{
	struct ragg__kv_server *s = arg;
	struct pollfd *pfd = calloc(KV_MAX_CLIENTS + 2, sizeof(*pfd));
	if (!pfd) {
		ragg__error("rendezvous: out of memory");
		return NULL;
	}
	for (;;) {
		/* Out of descriptors, the listener waits out its pause (see
		 * transports/util/accept.h) rather than wake this loop at once. */
		int timeout = -1;
		if (s->accept_guard.paused_until) {
			int64_t now = (int64_t)ragg__now_ms();
			if (!ragg__tp_accept_resume(&s->accept_guard, now))
				timeout = (int)(s->accept_guard.paused_until - now);
		}
		bool listening = s->nclients < KV_MAX_CLIENTS && !s->accept_guard.paused_until;
		pfd[0] = (struct pollfd){ .fd = s->stop_pipe[0], .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = s->listen_fd, .events = listening ? POLLIN : 0 };
		for (int i = 0; i < s->nclients; i++)
			pfd[2 + i] = (struct pollfd){ .fd = s->clients[i].fd, .events = POLLIN };
		int n = poll(pfd, (nfds_t)(2 + s->nclients), timeout);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || pfd[0].revents)
			break;
		for (int i = s->nclients - 1; i >= 0; i--) {
			if (!pfd[2 + i].revents)
				continue;
			if (kv_client_readable(s, &s->clients[i])) {
				close(s->clients[i].fd);
				s->clients[i] = s->clients[--s->nclients];
			}
		}
		if (pfd[1].revents & POLLIN) {
			int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd >= 0) {
				ragg__tp_accept_ok(&s->accept_guard);
				s->clients[s->nclients].fd = fd;
				s->clients[s->nclients].len = 0;
				s->nclients++;
			} else if (errno == EMFILE || errno == ENFILE) {
				int err = errno;
				unsigned long shed, hits;
				if (ragg__tp_accept_exhausted(&s->accept_guard, s->listen_fd,
				                              (int64_t)ragg__now_ms(), &shed,
				                              &hits))
					ragg__warn(
					    "rendezvous: accept: %s: %lu connection(s) closed "
					    "unserved, not accepting for %d ms (%lu time(s) "
					    "since the last such line)",
					    strerror(err), shed, s->accept_guard.pause_ms, hits);
			}
		}
	}
	free(pfd);
	return NULL;
}

int ragg__kv_server_start(const char *root, struct ragg__kv_server **out)
{
	char host[256], port[32];
	struct ragg__kv_server *s;
	int one = 1, zero = 0, rc;

	if (ragg__split_hostport(root, host, sizeof(host), port, sizeof(port))) {
		ragg__error("RAGG_ROOT=\"%s\": expected host:port", root);
		return RAGG_ERR_CONFIG;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->clients = calloc(KV_MAX_CLIENTS, sizeof(*s->clients));
	if (!s->clients) {
		rc = -ENOMEM;
		goto err_free;
	}
	/* A dual-stack socket on every address: the root's host name may
	 * resolve to either family, and peers on other hosts must reach it.
	 * Hosts without IPv6 get an IPv4 socket. */
	long p = strtol(port, NULL, 10);
	if (p <= 0 || p > 65535) {
		ragg__error("RAGG_ROOT=\"%s\": invalid port", root);
		rc = RAGG_ERR_CONFIG;
		goto err_free;
	}
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6,
		                   .sin6_port = htons((uint16_t)p),
		                   .sin6_addr = in6addr_any };
	struct sockaddr_in a4 = { .sin_family = AF_INET,
		                  .sin_port = htons((uint16_t)p),
		                  .sin_addr.s_addr = htonl(INADDR_ANY) };
	struct sockaddr *sa = (struct sockaddr *)&a6;
	socklen_t salen = sizeof(a6);
	s->listen_fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->listen_fd >= 0) {
		setsockopt(s->listen_fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	} else {
		s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		sa = (struct sockaddr *)&a4;
		salen = sizeof(a4);
	}
	if (s->listen_fd < 0) {
		rc = -errno;
		goto err_free;
	}
	setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s->listen_fd, sa, salen) || listen(s->listen_fd, 1024)) {
		rc = -errno;
		ragg__error(
		    "rendezvous: cannot listen on port %s: %s (is another job using RAGG_ROOT=%s?)",
		    port, strerror(errno), root);
		goto err_sock;
	}
	if (pipe2(s->stop_pipe, O_CLOEXEC)) {
		rc = -errno;
		goto err_sock;
	}
	ragg__tp_accept_guard_init(&s->accept_guard);
	if ((rc = -pthread_create(&s->thread, NULL, kv_thread, s))) {
		ragg__tp_accept_guard_fini(&s->accept_guard);
		goto err_pipe;
	}
	ragg__info("rendezvous serving on port %s", port);
	*out = s;
	return 0;
err_pipe:
	close(s->stop_pipe[0]);
	close(s->stop_pipe[1]);
err_sock:
	close(s->listen_fd);
err_free:
	free(s->clients);
	free(s);
	return rc;
}

void ragg__kv_server_stop(struct ragg__kv_server *s)
{
	if (!s)
		return;
	ssize_t w = write(s->stop_pipe[1], "x", 1);
	(void)w;
	pthread_join(s->thread, NULL);
	for (int i = 0; i < s->nclients; i++)
		close(s->clients[i].fd);
	for (size_t i = 0; i < s->nentries; i++) {
		free(s->entries[i].key);
		free(s->entries[i].value);
	}
	free(s->entries);
	free(s->clients);
	close(s->listen_fd);
	ragg__tp_accept_guard_fini(&s->accept_guard);
	close(s->stop_pipe[0]);
	close(s->stop_pipe[1]);
	free(s);
}
