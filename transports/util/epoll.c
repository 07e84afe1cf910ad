/*
 * The epoll plumbing the socket-based transports share (see epoll.h).
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "epoll.h"

int64_t ragg__tp_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ragg__tp_epoll_set_mask(int epfd, int fd, uint32_t *mask, uint32_t want, void *ptr,
                            const struct ragg_tp_params *params, const char *name, const char *who)
{
	if (fd < 0 || *mask == want)
		return 0;
	struct epoll_event ev = { .events = want, .data.ptr = ptr };
	int op = *mask ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(epfd, op, fd, &ev) < 0) {
		int rc = -errno;
		if (params->log_level >= RAGG_LOG_ERROR)
			params->log(RAGG_LOG_ERROR, "%s: %s: epoll_ctl: %s", name, who,
			            strerror(-rc));
		return rc;
	}
	*mask = want;
	return 0;
}

int ragg__tp_epoll_wake_sync(int epfd, int *cur, uint64_t tag, const struct ragg_tp_params *params,
                             const char *name)
{
	int want = params->wake_fd;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };

	if (want == *cur)
		return 0;
	if (*cur >= 0)
		epoll_ctl(epfd, EPOLL_CTL_DEL, *cur, NULL);
	*cur = -1;
	if (want >= 0 && epoll_ctl(epfd, EPOLL_CTL_ADD, want, &ev) < 0) {
		int rc = -errno;
		if (params->log_level >= RAGG_LOG_ERROR)
			params->log(RAGG_LOG_ERROR, "%s: wake fd %d: epoll_ctl: %s", name, want,
			            strerror(-rc));
		return rc;
	}
	*cur = want;
	return 0;
}
