/* Accept under descriptor exhaustion: see accept.h. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "accept.h"

static int open_reserve(void)
{
	return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void ragg__tp_accept_guard_init(struct ragg__tp_accept_guard *g)
{
	*g = (struct ragg__tp_accept_guard){ .reserve_fd = open_reserve() };
}

void ragg__tp_accept_guard_fini(struct ragg__tp_accept_guard *g)
{
	if (g->reserve_fd >= 0)
		close(g->reserve_fd);
	g->reserve_fd = -1;
}

bool ragg__tp_accept_exhausted(struct ragg__tp_accept_guard *g, int lfd, int64_t now,
                               unsigned long *shed, unsigned long *hits)
{
	g->hits++;
	/* Bounded like the accept loops: a storm is shed over several turns,
	 * each after a pause. Without a reserve (another thread took the
	 * descriptor) only the pause remains, and the next turn tries to get
	 * the reserve back first. */
	if (g->reserve_fd >= 0) {
		close(g->reserve_fd);
		for (int i = 0; i < 256; i++) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0)
				break;
			close(fd);
			g->shed++;
		}
	}
	g->reserve_fd = open_reserve();
	g->pause_ms = g->pause_ms ? g->pause_ms * 2 : RAGG_TP_ACCEPT_PAUSE_MIN_MS;
	if (g->pause_ms > RAGG_TP_ACCEPT_PAUSE_MAX_MS)
		g->pause_ms = RAGG_TP_ACCEPT_PAUSE_MAX_MS;
	g->paused_until = now + g->pause_ms;
	if (g->last_log_ms && now - g->last_log_ms < RAGG_TP_ACCEPT_LOG_EVERY_MS)
		return false;
	g->last_log_ms = now ? now : 1;
	*shed = g->shed - g->shed_logged;
	*hits = g->hits - g->hits_logged;
	g->shed_logged = g->shed;
	g->hits_logged = g->hits;
	return true;
}

bool ragg__tp_accept_pause_epoll(struct ragg__tp_accept_guard *g, int epfd, int lfd, uint64_t tag,
                                 int64_t now, const char *where, int err, char *msg, size_t cap)
{
	unsigned long shed, hits;
	struct epoll_event ev = { .events = 0, .data.u64 = tag };
	bool say = ragg__tp_accept_exhausted(g, lfd, now, &shed, &hits);
	if (say)
		snprintf(msg, cap,
		         "accept on %s: %s: %lu connection(s) closed unserved, not accepting for "
		         "%d ms (%lu time(s) since the last such line)",
		         where, strerror(err), shed, g->pause_ms, hits);
	epoll_ctl(epfd, EPOLL_CTL_MOD, lfd, &ev);
	return say;
}

void ragg__tp_accept_resume_epoll(struct ragg__tp_accept_guard *g, int epfd, int lfd,
                                  uint64_t tag, int64_t now)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };
	if (lfd >= 0 && ragg__tp_accept_resume(g, now))
		epoll_ctl(epfd, EPOLL_CTL_MOD, lfd, &ev);
}
