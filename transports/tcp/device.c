/*
 * The tcp device: one epoll set holding the listener, every endpoint and the
 * core's wake fd, plus the table of registered regions. Also the ops table,
 * the one symbol this transport exports to the registry.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <sodium.h>

#include "../util/params.h"
#include "../util/stubs.h"
#include "tcp.h"

void ragg__tcp_pending_add(struct ragg__tcp_ep *ep, unsigned report)
{
	ep->report |= report;
	if (ragg__tcp_list_empty(&ep->pend))
		ragg__tcp_list_add_tail(&ep->dev->pending, &ep->pend);
}

struct ragg_tp_event *ragg__tcp_out_next(struct ragg__tcp_out *out, struct ragg__tcp_ep *ep,
                                         enum ragg_tp_event_type type)
{
	struct ragg_tp_event *ev = &out->ev[out->n++];
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->ep = &ep->base;
	return ev;
}

static int tcp_probe(char *why, size_t why_len)
{
	/* TCP works wherever the stack does; an IPv4 socket is enough proof. */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int rc = -errno;
		if (why && why_len)
			snprintf(why, why_len, "socket(AF_INET, SOCK_STREAM): %s", strerror(-rc));
		return rc;
	}
	close(fd);
	return 0;
}

static int tcp_open(const struct ragg_tp_params *params, struct ragg_tp_dev **out)
{
	struct ragg__tcp_dev *dev;
	int rc;

	if (!params || !out || params->size < offsetof(struct ragg_tp_params, wake_fd))
		return -EINVAL;
	if (sodium_init() < 0)
		return -ENOSYS;
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	ragg__tp_params_copy(&dev->base.params, params);
	dev->base.ops = &ragg__tp_tcp_ops;
	dev->lfd = -1;
	dev->wake_fd = dev->base.params.wake_fd;
	ragg__tcp_list_init(&dev->eps);
	ragg__tcp_list_init(&dev->pending);
	ragg__tcp_list_init(&dev->dead);
	snprintf(dev->device, sizeof(dev->device), "tcp");

	rc = ragg__tcp_config_read(dev, &dev->cfg);
	if (rc)
		goto err_free;
	dev->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (dev->epfd < 0) {
		rc = -errno;
		ragg__tcp_error(dev, "epoll_create1: %s", strerror(-rc));
		goto err_free;
	}
	dev->wake_fd = -1;
	rc = ragg__tcp_wake_sync(dev);
	if (rc)
		goto err_epoll;
	ragg__tcp_debug(dev, "device open (queue depth %zu, sndbuf %zu, rcvbuf %zu)",
	                dev->cfg.queue_depth, dev->cfg.sndbuf, dev->cfg.rcvbuf);
	*out = &dev->base;
	return 0;

err_epoll:
	close(dev->epfd);
err_free:
	free(dev);
	return rc;
}

static void tcp_close(struct ragg_tp_dev *d)
{
	if (!d)
		return;
	struct ragg__tcp_dev *dev = ragg__tcp_dev(d);
	while (!ragg__tcp_list_empty(&dev->eps))
		ragg__tcp_ep_free(ragg__container_of(dev->eps.next, struct ragg__tcp_ep, link));
	while (!ragg__tcp_list_empty(&dev->dead))
		ragg__tcp_ep_free(ragg__container_of(dev->dead.next, struct ragg__tcp_ep, link));
	if (dev->lfd >= 0) {
		close(dev->lfd);
		ragg__tp_accept_guard_fini(&dev->accept_guard);
	}
	ragg__tcp_regions_free(dev);
	ragg__tcp_seal_pool_free(dev);
	close(dev->epfd);
	free(dev);
}

static int tcp_query(struct ragg_tp_dev *d, struct ragg_tp_attr *attr)
{
	struct ragg__tcp_dev *dev = ragg__tcp_dev(d);
	if (!attr)
		return -EINVAL;
	struct ragg_tp_attr a = {
		.size = sizeof(a),
		.max_write =
		    RAGG__TCP_MAX_WRITE < SIZE_MAX ? (size_t)RAGG__TCP_MAX_WRITE : SIZE_MAX,
		.max_inline = 0,
		.max_priv = RAGG_TP_PRIV_MAX,
		.queue_depth = (int)dev->cfg.queue_depth,
	};
	snprintf(a.device, sizeof(a.device), "%s", dev->device);
	*attr = a;
	return 0;
}

const struct ragg_tp_ops ragg__tp_tcp_ops = {
	.size = sizeof(struct ragg_tp_ops),
	.abi = RAGG_TP_ABI_VERSION,
	.name = "tcp",
	.caps = RAGG_TP_CAP_WRITE_IMM | RAGG_TP_CAP_SEND | RAGG_TP_CAP_ZERO_COPY | RAGG_TP_CAP_SEAL,

	.probe = tcp_probe,
	.open = tcp_open,
	.close = tcp_close,
	.query = tcp_query,

	.mr_reg = ragg__tcp_mr_reg,
	.mr_dereg = ragg__tcp_mr_dereg,

	.listen = ragg__tcp_listen,
	.connect = ragg__tcp_connect,
	.accept = ragg__tcp_accept,
	.reject = ragg__tcp_reject,
	.ep_close = ragg__tcp_ep_close,

	.write_imm = ragg__tcp_write_imm,
	.send = ragg__tcp_send,

	.poll = ragg__tcp_poll,
	.wait = ragg__tcp_wait,
	.arm = ragg__tcp_arm,
	.wait_fd = ragg__tcp_wait_fd,
	.describe = ragg__tp_describe_none,
	.seal = ragg__tcp_seal,
};
