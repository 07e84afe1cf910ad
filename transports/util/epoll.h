/*
 * The epoll plumbing of the socket-based transports: each keeps one epoll
 * set per device holding its endpoints' fds and the core's wake fd, and
 * counts its timeouts in milliseconds of the monotonic clock.
 *
 * Errors are logged the way a transport logs them: through params->log at
 * params->log_level, each line starting with "<name>: ".
 */
#ifndef RAGG_TP_UTIL_EPOLL_H
#define RAGG_TP_UTIL_EPOLL_H

#include <stdint.h>

#include <ragg/transport.h>

/* Milliseconds of CLOCK_MONOTONIC, the clock of every deadline. */
int64_t ragg__tp_now_ms(void);

/* Register fd in epfd for exactly `want` events (EPOLLIN/EPOLLOUT) with
 * ptr as its data, adding it when *mask is 0 and modifying it otherwise;
 * *mask (what is registered now) becomes want on success. A negative fd is
 * left alone. who names the fd in the log. 0 or negative errno. */
int ragg__tp_epoll_set_mask(int epfd, int fd, uint32_t *mask, uint32_t want, void *ptr,
                            const struct ragg_tp_params *params, const char *name, const char *who);

/* Make params->wake_fd the fd in epfd for EPOLLIN with tag as its data:
 * *cur is the one registered now (-1 for none), removed when it differs;
 * the core may set or clear params->wake_fd after open(). 0 or negative
 * errno; on failure *cur is -1. */
int ragg__tp_epoll_wake_sync(int epfd, int *cur, uint64_t tag, const struct ragg_tp_params *params,
                             const char *name);

#endif
