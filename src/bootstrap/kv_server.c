/*
 * The rendezvous server: one thread, poll(2) over the listening socket and
 * its clients. Requests are single lines:
 *   PUT <key> <value>\n  ->  OK\n
 *   GET <key>\n          ->  VAL <value>\n | NONE\n
 * Keys and values are printable without spaces. A client that sends
 * something else is dropped; the others carry on.
 *
 * Bounds, each refusal logged: the server listens on the address of
 * RAGG_ROOT's host only; at most KV_MAX_CLIENTS clients at once, and one
 * that sends no request for the job's RAGG_TIMEOUT_MS is dropped; keys of at most
 * KV_KEY_MAX bytes, values shorter than RAGG_KV_VALUE_MAX, at most
 * KV_MAX_ENTRIES entries.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "../../transports/util/accept.h"
#include "bootstrap/kv.h"
#include "clock.h"
#include "log.h"

#include <ragg/ragg.h>

#define KV_MAX_CLIENTS 1024
#define KV_MAX_ENTRIES 1024
#define KV_KEY_MAX     64
#define KV_LINE_MAX    (RAGG_KV_VALUE_MAX + 128)

struct kv_entry {
	char *key, *value, *owner;
};

struct kv_client {
	int fd;
	unsigned long long seq;
	unsigned char chal[RAGG_KV_CHALLENGE_BYTES];
	uint64_t last_ms; /* its last request, or its arrival */
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
	int idle_ms;
	char job_key[128];
};

static const char *kv_lookup(struct ragg__kv_server *s, const char *key)
{
	for (size_t i = 0; i < s->nentries; i++)
		if (strcmp(s->entries[i].key, key) == 0)
			return s->entries[i].value;
	return NULL;
}

static int kv_store(struct ragg__kv_server *s, const char *owner, const char *key,
                    const char *value)
{
	for (size_t i = 0; i < s->nentries; i++)
		if (strcmp(s->entries[i].key, key) == 0) {
			if (strcmp(s->entries[i].owner, owner) != 0) {
				ragg__warn("rendezvous: refusing \"%s\" from %s: %s published it",
				           key, owner, s->entries[i].owner);
				return -EEXIST;
			}
			char *v = strdup(value);
			if (!v)
				return -ENOMEM;
			free(s->entries[i].value);
			s->entries[i].value = v;
			return 0;
		}
	if (s->nentries >= KV_MAX_ENTRIES) {
		ragg__warn("rendezvous: refusing \"%s\": already %d entries", key, KV_MAX_ENTRIES);
		return -ENOSPC;
	}
	if (s->nentries == s->capentries) {
		size_t cap = s->capentries ? 2 * s->capentries : 64;
		struct kv_entry *e = realloc(s->entries, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		s->entries = e;
		s->capentries = cap;
	}
	char *k = strdup(key), *v = strdup(value), *o = strdup(owner);
	if (!k || !v || !o) {
		free(k);
		free(v);
		free(o);
		return -ENOMEM;
	}
	s->entries[s->nentries++] = (struct kv_entry){ k, v, o };
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

/* Check and strip "<seq> <mac>" off line. */
static int kv_verify(struct ragg__kv_server *s, struct kv_client *c, char *line)
{
	char want[2 * crypto_auth_BYTES + 1], seq[32];
	char *sp = strrchr(line, ' ');
	if (!sp || strlen(sp + 1) != 2 * crypto_auth_BYTES)
		goto refuse;
	*sp = 0;
	ragg__kv_mac(s->job_key, c->chal, line, want);
	if (sodium_memcmp(want, sp + 1, sizeof(want) - 1) != 0)
		goto refuse;
	snprintf(seq, sizeof(seq), " %llu", c->seq);
	size_t n = strlen(line), m = strlen(seq);
	if (n < m || strcmp(line + n - m, seq) != 0) {
		ragg__warn("rendezvous: refusing a request out of sequence (a replay?)");
		return -1;
	}
	line[n - m] = 0;
	c->seq++;
	return 0;
refuse:
	ragg__warn("rendezvous: refusing a request without a valid MAC of the job key");
	return -1;
}

/* 0 to keep the client, -1 to drop it. */
static int kv_handle_line(struct ragg__kv_server *s, struct kv_client *c, char *line)
{
	char reply[KV_LINE_MAX + 8];
	int fd = c->fd;
	if (kv_verify(s, c, line))
		return -1;
	char *save, *cmd = strtok_r(line, " ", &save);
	char *id = cmd && strcmp(cmd, "PUT") == 0 ? strtok_r(NULL, " ", &save) : NULL;
	char *key = strtok_r(NULL, " ", &save);
	if (!cmd || !key)
		return -1;
	if (strlen(key) > KV_KEY_MAX) {
		ragg__warn("rendezvous: refusing a key of %zu bytes (at most %d)", strlen(key),
		           KV_KEY_MAX);
		return -1;
	}
	if (strcmp(cmd, "PUT") == 0) {
		char *value = strtok_r(NULL, " ", &save);
		if (!value || strtok_r(NULL, " ", &save))
			return -1;
		if (strlen(value) >= RAGG_KV_VALUE_MAX) {
			ragg__warn("rendezvous: refusing a value of %zu bytes for \"%s\" (at most "
			           "%d)",
			           strlen(value), key, RAGG_KV_VALUE_MAX - 1);
			return -1;
		}
		int rc = kv_store(s, id, key, value);
		if (rc == -EEXIST)
			return send_all(fd, "TAKEN\n", 6);
		if (rc)
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
	c->last_ms = ragg__now_ms();
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
		if (kv_handle_line(s, c, c->line)) {
			ragg__warn("rendezvous: dropping a client after a refused request");
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
		/* Clients are looked at every second at least, to drop idle ones. */
		if (s->nclients && (timeout < 0 || timeout > 1000))
			timeout = 1000;
		int n = poll(pfd, (nfds_t)(2 + s->nclients), timeout);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || pfd[0].revents)
			break;
		uint64_t now = ragg__now_ms();
		for (int i = s->nclients - 1; i >= 0; i--) {
			bool idle = !pfd[2 + i].revents &&
			            now - s->clients[i].last_ms >= (uint64_t)s->idle_ms;
			if (idle)
				ragg__warn("rendezvous: dropping a client idle for %d ms",
				           s->idle_ms);
			else if (!pfd[2 + i].revents)
				continue;
			if (idle || kv_client_readable(s, &s->clients[i])) {
				close(s->clients[i].fd);
				s->clients[i] = s->clients[--s->nclients];
			}
		}
		if (pfd[1].revents & POLLIN) {
			int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			struct kv_client *c = &s->clients[s->nclients];
			char chal[8 + 2 * RAGG_KV_CHALLENGE_BYTES];
			if (fd >= 0) {
				randombytes_buf(c->chal, sizeof(c->chal));
				c->seq = 0;
				memcpy(chal, "CHAL ", 5);
				sodium_bin2hex(chal + 5, sizeof(chal) - 6, c->chal,
				               sizeof(c->chal));
				strcat(chal, "\n");
				if (send_all(fd, chal, strlen(chal))) {
					close(fd);
					fd = -1;
				}
			}
			if (fd >= 0) {
				ragg__tp_accept_ok(&s->accept_guard);
				s->clients[s->nclients].fd = fd;
				s->clients[s->nclients].len = 0;
				s->clients[s->nclients].last_ms = now;
				s->nclients++;
				if (s->nclients == KV_MAX_CLIENTS)
					ragg__warn(
					    "rendezvous: %d clients: refusing more until one "
					    "leaves",
					    KV_MAX_CLIENTS);
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

/* RAGG_ROOT_FD: a listening TCP socket a launcher bound (to port 0, the
 * kernel's choice, so no port is guessed) and handed down; checked, made
 * non-blocking and close-on-exec, and served as if bound here. */
static int adopt_listener(int fd, const char *root)
{
	int v = 0, type = 0;
	socklen_t len = sizeof(v), tlen = sizeof(type);
	struct sockaddr_storage a;
	socklen_t alen = sizeof(a);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) || !v ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) || type != SOCK_STREAM ||
	    getsockname(fd, (struct sockaddr *)&a, &alen) ||
	    (a.ss_family != AF_INET && a.ss_family != AF_INET6)) {
		ragg__error("RAGG_ROOT_FD=%d: not a listening TCP socket", fd);
		return RAGG_ERR_CONFIG;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) || fcntl(fd, F_SETFD, FD_CLOEXEC))
		return -errno;
	ragg__info("rendezvous: serving %s on the inherited socket %d", root, fd);
	return 0;
}

int ragg__kv_server_start(const char *root, int idle_ms, const char *job_key,
                          struct ragg__kv_server **out)
{
	return ragg__kv_server_start_fd(root, -1, idle_ms, job_key, out);
}

int ragg__kv_server_start_fd(const char *root, int listen_fd, int idle_ms, const char *job_key,
                             struct ragg__kv_server **out)
{
	char host[256], port[32];
	struct ragg__kv_server *s;
	int one = 1, rc;

	if (ragg__split_hostport(root, host, sizeof(host), port, sizeof(port))) {
		ragg__error("RAGG_ROOT=\"%s\": expected host:port", root);
		return RAGG_ERR_CONFIG;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->idle_ms = idle_ms > 0 ? idle_ms : 30000;
	snprintf(s->job_key, sizeof(s->job_key), "%s", job_key ? job_key : "");
	s->clients = calloc(KV_MAX_CLIENTS, sizeof(*s->clients));
	if (!s->clients) {
		rc = -ENOMEM;
		goto err_free;
	}
	if (listen_fd >= 0) {
		if ((rc = adopt_listener(listen_fd, root)))
			goto err_free;
		s->listen_fd = listen_fd;
		goto listening;
	}
	/* Only the address of RAGG_ROOT's host: that is where the job's
	 * processes look for it, and nobody needs it on any other. */
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
		                  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	if ((rc = getaddrinfo(host, port, &hints, &ai)) || !ai) {
		ragg__error("RAGG_ROOT=\"%s\": cannot resolve: %s", root, gai_strerror(rc));
		rc = RAGG_ERR_CONFIG;
		goto err_free;
	}
	s->listen_fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0) {
		rc = -errno;
		freeaddrinfo(ai);
		goto err_free;
	}
	setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s->listen_fd, ai->ai_addr, ai->ai_addrlen) || listen(s->listen_fd, 1024)) {
		rc = -errno;
		ragg__error(
		    "rendezvous: cannot listen on %s: %s (is another job using RAGG_ROOT=%s? is "
		    "it an address of this host?)",
		    root, strerror(errno), root);
		freeaddrinfo(ai);
		goto err_sock;
	}
	freeaddrinfo(ai);
listening:
	if (pipe2(s->stop_pipe, O_CLOEXEC)) {
		rc = -errno;
		goto err_sock;
	}
	ragg__tp_accept_guard_init(&s->accept_guard);
	if ((rc = -pthread_create(&s->thread, NULL, kv_thread, s))) {
		ragg__tp_accept_guard_fini(&s->accept_guard);
		goto err_pipe;
	}
	ragg__info("rendezvous serving on %s", root);
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
		free(s->entries[i].owner);
	}
	free(s->entries);
	free(s->clients);
	close(s->listen_fd);
	ragg__tp_accept_guard_fini(&s->accept_guard);
	close(s->stop_pipe[0]);
	close(s->stop_pipe[1]);
	sodium_memzero(s->job_key, sizeof(s->job_key));
	free(s);
}
