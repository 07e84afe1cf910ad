/*
 * Device selection and the per-process device context.
 *
 * The context comes from rdma_get_devices(), not ibv_open_device(): rdma_cm
 * binds every cm_id to one of its own contexts, and a QP can only be created
 * on an id whose context is the PD's. Everything a connection needs that
 * does not depend on the peer (PD, CQ, completion channel, SRQ and its
 * buffers) is created here, once.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "verbs.h"
#include "../util/stubs.h"

const char *ragg__verbs_port_state_str(enum ibv_port_state s)
{
	switch (s) {
	case IBV_PORT_NOP: return "NOP";
	case IBV_PORT_DOWN: return "DOWN";
	case IBV_PORT_INIT: return "INIT";
	case IBV_PORT_ARMED: return "ARMED";
	case IBV_PORT_ACTIVE: return "ACTIVE";
	case IBV_PORT_ACTIVE_DEFER: return "ACTIVE_DEFER";
	default: return "UNKNOWN";
	}
}

/* Why a port that is not ACTIVE is not, in words an operator can act on. */
static const char *port_advice(const struct ibv_port_attr *pa)
{
	if (pa->state == IBV_PORT_INIT && pa->link_layer == IBV_LINK_LAYER_INFINIBAND)
		return "link up but no subnet manager has configured it (start opensm)";
	if (pa->state == IBV_PORT_DOWN)
		return "no link: check the cable and the switch port, or the net device "
		       "under a Soft-RoCE device (`rdma link`, `ip link`)";
	return "not ready yet";
}

/*
 * Scan the devices in list for the configured one (or any) with an active
 * port (the configured one, or any). Returns the index into list and sets
 * *port, or -1 with the reason in why.
 */
static int pick_device(struct ibv_context *const *ctxs, struct ibv_device *const *devs, int n,
                       const struct ragg__verbs_config *cfg, uint8_t *port, char *why,
                       size_t why_len)
{
	char seen[512] = "";
	size_t off = 0;
	bool named_found = false;
	for (int i = 0; i < n; i++) {
		struct ibv_context *ctx = ctxs ? ctxs[i] : NULL;
		struct ibv_device *d = ctx ? ctx->device : devs[i];
		const char *name = ibv_get_device_name(d);
		if (cfg->device[0] && strcmp(cfg->device, name) != 0)
			continue;
		named_found = true;
		bool opened = false;
		if (!ctx) {
			ctx = ibv_open_device(d);
			if (!ctx) {
				off += (size_t)snprintf(seen + off,
				                        off < sizeof(seen) ? sizeof(seen) - off : 0,
				                        "%s%s: cannot open (%s)", off ? "; " : "",
				                        name, strerror(errno));
				continue;
			}
			opened = true;
		}
		struct ibv_device_attr da;
		int found = -1;
		if (ibv_query_device(ctx, &da) == 0) {
			for (int p = 1; p <= da.phys_port_cnt && found < 0; p++) {
				if (cfg->port && p != cfg->port)
					continue;
				struct ibv_port_attr pa;
				if (ibv_query_port(ctx, (uint8_t)p, &pa) != 0)
					continue;
				if (pa.state == IBV_PORT_ACTIVE) {
					found = p;
					break;
				}
				if (off < sizeof(seen))
					off += (size_t)snprintf(
					    seen + off, sizeof(seen) - off,
					    "%s%s port %d is %s (%s)", off ? "; " : "", name, p,
					    ragg__verbs_port_state_str(pa.state), port_advice(&pa));
			}
			if (cfg->port && cfg->port > da.phys_port_cnt && off < sizeof(seen))
				off += (size_t)snprintf(seen + off, sizeof(seen) - off,
				                        "%s%s has no port %ld (it has %d)",
				                        off ? "; " : "", name, cfg->port,
				                        da.phys_port_cnt);
		}
		if (opened)
			ibv_close_device(ctx);
		if (found > 0) {
			*port = (uint8_t)found;
			return i;
		}
	}
	if (cfg->device[0] && !named_found) {
		char names[256] = "";
		size_t o = 0;
		for (int i = 0; i < n && o < sizeof(names); i++)
			o +=
			    (size_t)snprintf(names + o, sizeof(names) - o, "%s%s", i ? ", " : "",
			                     ibv_get_device_name(ctxs ? ctxs[i]->device : devs[i]));
		snprintf(why, why_len,
		         "RDMA device %s (RAGG_VERBS_DEVICE) not found; this host has: %s",
		         cfg->device, names);
	} else {
		snprintf(why, why_len, "no RDMA port is ACTIVE: %s", seen);
	}
	return -1;
}

int ragg__verbs_probe(char *why, size_t why_len)
{
	struct ragg__verbs_config cfg;
	int rc = ragg__verbs_config_read(&cfg, why, why_len);
	if (rc)
		return rc;
	int n = 0;
	struct ibv_device **devs = ibv_get_device_list(&n);
	if (!devs) {
		snprintf(why, why_len,
		         "no RDMA support in this kernel or libibverbs (ibv_get_device_list: %s)",
		         strerror(errno));
		return -ENODEV;
	}
	if (n == 0) {
		ibv_free_device_list(devs);
		snprintf(
		    why, why_len,
		    "no RDMA devices found (load the NIC's RDMA driver, e.g. mlx5_ib, or add a "
		    "Soft-RoCE device: `rdma link add rxe0 type rxe netdev eth0`)");
		return -ENODEV;
	}
	uint8_t port;
	int i = pick_device(NULL, devs, n, &cfg, &port, why, why_len);
	ibv_free_device_list(devs);
	if (i < 0)
		return -ENODEV;
	if (access("/dev/infiniband/rdma_cm", R_OK | W_OK) != 0) {
		snprintf(
		    why, why_len,
		    "RDMA device present but rdma_cm is not usable (/dev/infiniband/rdma_cm: %s; "
		    "load rdma_ucm)",
		    strerror(errno));
		return -ENODEV;
	}
	return 0;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static void fork_check(struct ragg__verbs_dev *dev)
{
	/*
	 * ragg never calls ibv_fork_init(): a library cannot guarantee it runs
	 * before any other verbs user in the process, and it makes every
	 * registration pay for madvise(MADV_DONTFORK). Kernels from 5.13 make
	 * fork() safe without it (pinned pages are copied for the child);
	 * on older ones say how the user can turn it on.
	 */
	enum ibv_fork_status fs = ibv_is_fork_initialized();
	if (fs == IBV_FORK_DISABLED)
		ragg__verbs_info(dev, "fork() after memory registration is unsafe with this kernel "
		                      "(< 5.13); set RDMAV_FORK_SAFE=1 if the application forks");
}

/* The largest inline size the device grants for our QP shape, at most want. */
static uint32_t probe_inline(struct ragg__verbs_dev *dev, uint32_t want, uint32_t *depth)
{
	for (;;) {
		struct ibv_qp_init_attr ia = {
		    .send_cq = dev->cq,
		    .recv_cq = dev->cq,
		    .srq = dev->srq,
		    .cap = {.max_send_wr = *depth, .max_send_sge = 1, .max_inline_data = want},
		    .qp_type = IBV_QPT_RC,
		};
		struct ibv_qp *qp = ibv_create_qp(dev->pd, &ia);
		if (qp) {
			uint32_t got = ia.cap.max_inline_data;
			ibv_destroy_qp(qp);
			return got < want ? got : want;
		}
		if (want == 0) {
			if (*depth <= 16)
				return 0;
			*depth /= 2;
			continue;
		}
		want = want > 16 ? want / 2 : 0;
	}
}

static int create_srq(struct ragg__verbs_dev *dev)
{
	int rc;
	uint32_t n = dev->srq_depth;
	dev->rbufs = aligned_alloc(4096, ((size_t)n * RAGG_TP_MSG_MAX + 4095) & ~(size_t)4095);
	dev->repost = calloc(n, sizeof(*dev->repost));
	dev->rwr = calloc(n, sizeof(*dev->rwr));
	dev->rsge = calloc(n, sizeof(*dev->rsge));
	if (!dev->rbufs || !dev->repost || !dev->rwr || !dev->rsge)
		return -ENOMEM;
	dev->rbufs_mr = ragg__verbs_reg(dev, dev->rbufs, (size_t)n * RAGG_TP_MSG_MAX,
	                                IBV_ACCESS_LOCAL_WRITE, "receive buffers", &rc);
	if (!dev->rbufs_mr)
		return rc;
	struct ibv_srq_init_attr sa = {.attr = {.max_wr = n, .max_sge = 1}};
	dev->srq = ibv_create_srq(dev->pd, &sa);
	if (!dev->srq) {
		rc = -errno;
		ragg__verbs_error(dev, "%s: ibv_create_srq(%u receives) failed: %s", dev->name, n,
		                  strerror(errno));
		return rc;
	}
	for (uint32_t i = 0; i < n; i++)
		dev->repost[i] = i;
	rc = ragg__verbs_srq_post(dev, dev->repost, n);
	return rc;
}

static int epoll_add(struct ragg__verbs_dev *dev, int fd, uint32_t tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = tag};
	if (epoll_ctl(dev->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int rc = -errno;
		ragg__verbs_error(dev, "epoll_ctl(ADD fd %d): %s", fd, strerror(errno));
		return rc;
	}
	return 0;
}

static int open_resources(struct ragg__verbs_dev *dev)
{
	const struct ragg__verbs_config *cfg = &dev->cfg;
	struct ibv_device_attr *da = &dev->dattr;
	int rc;

	int peers = dev->base.params.max_peers > 0 ? dev->base.params.max_peers : 4;
	dev->depth = (uint32_t)cfg->queue_depth;
	if (dev->depth > (uint32_t)da->max_qp_wr)
		dev->depth = (uint32_t)da->max_qp_wr;
	uint64_t srq =
	    cfg->srq_depth ? (uint64_t)cfg->srq_depth : (uint64_t)dev->depth * (uint64_t)peers;
	if (!cfg->srq_depth && srq < 1024)
		srq = 1024;
	if (da->max_srq_wr > 0 && srq > (uint64_t)da->max_srq_wr)
		srq = (uint64_t)da->max_srq_wr;
	dev->srq_depth = (uint32_t)srq;

	int64_t cq =
	    cfg->cq_depth ? cfg->cq_depth : (int64_t)dev->srq_depth + (int64_t)dev->depth * peers;
	if (cq > da->max_cqe)
		cq = da->max_cqe;

	dev->pd = ibv_alloc_pd(dev->ctx);
	if (!dev->pd) {
		rc = -errno;
		ragg__verbs_error(dev, "%s: ibv_alloc_pd failed: %s", dev->name, strerror(errno));
		return rc;
	}
	dev->comp_ch = ibv_create_comp_channel(dev->ctx);
	if (!dev->comp_ch) {
		rc = -errno;
		ragg__verbs_error(dev, "%s: ibv_create_comp_channel failed: %s", dev->name,
		                  strerror(errno));
		return rc;
	}
	if ((rc = set_nonblock(dev->comp_ch->fd)))
		return rc;
	dev->cq = ibv_create_cq(dev->ctx, (int)cq, NULL, dev->comp_ch, 0);
	if (!dev->cq) {
		rc = -errno;
		ragg__verbs_error(dev, "%s: ibv_create_cq(%lld entries) failed: %s", dev->name,
		                  (long long)cq, strerror(errno));
		return rc;
	}
	dev->cq_size = dev->cq->cqe;
	dev->wc_cap = (uint32_t)dev->cq_size;
	dev->wc = calloc(dev->wc_cap, sizeof(*dev->wc));
	if (!dev->wc)
		return -ENOMEM;
	if ((rc = create_srq(dev)))
		return rc;
	dev->cq_committed = (int)dev->srq_depth;
	if (dev->cq_committed > dev->cq_size) {
		ragg__verbs_error(dev,
		                  "%s: completion queue of %d entries cannot hold the %u "
		                  "receives of the SRQ; raise RAGG_VERBS_CQ_DEPTH",
		                  dev->name, dev->cq_size, dev->srq_depth);
		return -EINVAL;
	}

	uint32_t depth = dev->depth;
	dev->max_inline = probe_inline(dev, (uint32_t)cfg->inline_size, &depth);
	dev->depth = depth;

	dev->signal_interval = (uint32_t)cfg->signal_interval;
	if (dev->signal_interval > dev->depth / 2)
		dev->signal_interval = dev->depth / 2 ? dev->depth / 2 : 1;
	dev->max_msg = dev->pattr.max_msg_sz ? dev->pattr.max_msg_sz : (1u << 30);
	if (cfg->max_msg_size && cfg->max_msg_size < dev->max_msg)
		dev->max_msg = cfg->max_msg_size;
	/* A split write must fit in a queue that still has a signalled WR in
	 * flight; see the credit comment in verbs.h. */
	dev->max_wrs_per_write = dev->depth - dev->signal_interval;
	if (dev->max_wrs_per_write > 1024)
		dev->max_wrs_per_write = 1024;
	if (dev->max_wrs_per_write < 2)
		dev->max_wrs_per_write = 2;
	/* One WR of a split write with immediate is its length note. */
	dev->max_write = dev->max_msg * (dev->max_wrs_per_write - 1);
	if (dev->max_write / (dev->max_wrs_per_write - 1) != dev->max_msg)
		dev->max_write = UINT64_MAX;
	dev->swr = calloc(dev->max_wrs_per_write, sizeof(*dev->swr));
	dev->ssge = calloc(dev->max_wrs_per_write, sizeof(*dev->ssge));
	if (!dev->swr || !dev->ssge)
		return -ENOMEM;

	dev->cm_ch = rdma_create_event_channel();
	if (!dev->cm_ch) {
		rc = -errno;
		ragg__verbs_error(dev, "rdma_create_event_channel failed: %s (is rdma_ucm loaded?)",
		                  strerror(errno));
		return rc;
	}
	if ((rc = set_nonblock(dev->cm_ch->fd)) || (rc = set_nonblock(dev->ctx->async_fd)))
		return rc;

	dev->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (dev->epfd < 0)
		return -errno;
	if ((rc = epoll_add(dev, dev->comp_ch->fd, 0)) ||
	    (rc = epoll_add(dev, dev->cm_ch->fd, 1)) ||
	    (rc = epoll_add(dev, dev->ctx->async_fd, 2)))
		return rc;
	if ((rc = ragg__verbs_wake_sync(dev)))
		return rc;

	dev->qp_hash_mask = 63;
	while (dev->qp_hash_mask + 1 < (uint32_t)peers * 2 && dev->qp_hash_mask < 65535)
		dev->qp_hash_mask = dev->qp_hash_mask * 2 + 1;
	dev->qp_hash = calloc(dev->qp_hash_mask + 1, sizeof(*dev->qp_hash));
	if (!dev->qp_hash)
		return -ENOMEM;
	return 0;
}

static void free_resources(struct ragg__verbs_dev *dev)
{
	if (dev->epfd >= 0)
		close(dev->epfd);
	if (dev->cm_ch)
		rdma_destroy_event_channel(dev->cm_ch);
	if (dev->srq && ibv_destroy_srq(dev->srq))
		ragg__verbs_warn(dev, "%s: ibv_destroy_srq: %s", dev->name, strerror(errno));
	if (dev->rbufs_mr)
		ibv_dereg_mr(dev->rbufs_mr);
	if (dev->cq) {
		if (dev->cq_events_unacked)
			ibv_ack_cq_events(dev->cq, dev->cq_events_unacked);
		if (ibv_destroy_cq(dev->cq))
			ragg__verbs_warn(dev, "%s: ibv_destroy_cq: %s", dev->name, strerror(errno));
	}
	if (dev->comp_ch)
		ibv_destroy_comp_channel(dev->comp_ch);
	if (dev->pd && ibv_dealloc_pd(dev->pd))
		ragg__verbs_warn(dev, "%s: ibv_dealloc_pd: %s (memory regions still registered?)",
		                 dev->name, strerror(errno));
	if (dev->cm_devs)
		rdma_free_devices(dev->cm_devs);
	free(dev->rbufs);
	free(dev->repost);
	free(dev->rwr);
	free(dev->rsge);
	free(dev->swr);
	free(dev->ssge);
	free(dev->wc);
	free(dev->qp_hash);
	free(dev);
}

int ragg__verbs_open(const struct ragg_tp_params *params, struct ragg_tp_dev **out)
{
	struct ragg__verbs_dev *dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	size_t n =
	    params->size < sizeof(dev->base.params) ? params->size : sizeof(dev->base.params);
	memcpy(&dev->base.params, params, n);
	dev->base.params.size = sizeof(dev->base.params);
	dev->base.ops = &ragg__tp_verbs_ops;
	if (params->size < offsetof(struct ragg_tp_params, wake_fd) + sizeof(int))
		dev->base.params.wake_fd = -1;
	dev->wake_fd = -1; /* registered by ragg__verbs_wake_sync() */
	dev->epfd = -1;
	ragg__verbs_list_init(&dev->eps);
	ragg__verbs_list_init(&dev->failed);

	char why[768];
	int rc = ragg__verbs_config_read(&dev->cfg, why, sizeof(why));
	if (rc) {
		ragg__verbs_error(dev, "%s", why);
		goto err;
	}
	int ndev = 0;
	dev->cm_devs = rdma_get_devices(&ndev);
	if (!dev->cm_devs || ndev == 0) {
		rc = -ENODEV;
		ragg__verbs_error(dev,
		                  "no RDMA devices usable through rdma_cm (%s); see `ibv_devices` "
		                  "and `rdma link`",
		                  dev->cm_devs ? "none found" : strerror(errno));
		goto err;
	}
	int i = pick_device(dev->cm_devs, NULL, ndev, &dev->cfg, &dev->port, why, sizeof(why));
	if (i < 0) {
		rc = -ENODEV;
		ragg__verbs_error(dev, "%s", why);
		goto err;
	}
	dev->ctx = dev->cm_devs[i];
	snprintf(dev->name, sizeof(dev->name), "%s", ibv_get_device_name(dev->ctx->device));
	if (ibv_query_device(dev->ctx, &dev->dattr) ||
	    ibv_query_port(dev->ctx, dev->port, &dev->pattr)) {
		rc = -errno;
		ragg__verbs_error(dev, "%s: cannot query the device: %s", dev->name,
		                  strerror(errno));
		goto err;
	}
	fork_check(dev);
	if ((rc = open_resources(dev)))
		goto err;
	ragg__verbs_info(dev,
	                 "using %s port %u (%s, active MTU %d, max message %llu bytes): "
	                 "queue depth %u, SRQ %u, CQ %d, inline %u, signal every %u",
	                 dev->name, dev->port,
	                 dev->pattr.link_layer == IBV_LINK_LAYER_ETHERNET ? "RoCE" : "InfiniBand",
	                 128 << dev->pattr.active_mtu, (unsigned long long)dev->max_msg, dev->depth,
	                 dev->srq_depth, dev->cq_size, dev->max_inline, dev->signal_interval);
	*out = &dev->base;
	return 0;
err:
	free_resources(dev);
	return rc;
}

void ragg__verbs_close(struct ragg_tp_dev *d)
{
	if (!d)
		return;
	struct ragg__verbs_dev *dev = ragg__verbs_dev(d);
	ragg__verbs_ep_close_all(dev);
	free_resources(dev);
}

int ragg__verbs_query(struct ragg_tp_dev *d, struct ragg_tp_attr *attr)
{
	struct ragg__verbs_dev *dev = ragg__verbs_dev(d);
	struct ragg_tp_attr a;
	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.max_write = dev->max_write > SIZE_MAX ? SIZE_MAX : (size_t)dev->max_write;
	a.max_inline = dev->max_inline;
	/* One byte of rdma_cm's private data carries the length: rdma_cm
	 * reports the whole (padded) field, not what was sent. */
	a.max_priv = RAGG_TP_PRIV_MAX - 1;
	a.queue_depth = (int)dev->depth;
	snprintf(a.device, sizeof(a.device), "%s", dev->name);
	size_t n = attr->size && attr->size < sizeof(a) ? attr->size : sizeof(a);
	memcpy(attr, &a, n);
	attr->size = n;
	return 0;
}

int ragg__verbs_wake_sync(struct ragg__verbs_dev *dev)
{
	/* The core may set or clear params.wake_fd after open(). */
	int want = dev->base.params.wake_fd;
	if (want == dev->wake_fd)
		return 0;
	if (dev->wake_fd >= 0)
		epoll_ctl(dev->epfd, EPOLL_CTL_DEL, dev->wake_fd, NULL);
	dev->wake_fd = -1;
	if (want >= 0) {
		int rc = epoll_add(dev, want, 3);
		if (rc)
			return rc;
		dev->wake_fd = want;
	}
	return 0;
}

int ragg__verbs_cq_reserve(struct ragg__verbs_dev *dev, int cqes)
{
	if (dev->cq_committed + cqes <= dev->cq_size) {
		dev->cq_committed += cqes;
		return 0;
	}
	int want = dev->cq_size * 2;
	while (want < dev->cq_committed + cqes)
		want *= 2;
	if (want > dev->dattr.max_cqe)
		want = dev->dattr.max_cqe;
	if (want < dev->cq_committed + cqes || ibv_resize_cq(dev->cq, want) != 0) {
		ragg__verbs_error(dev,
		                  "%s: completion queue full (%d entries for %d endpoints' send "
		                  "queues and the SRQ) and it cannot grow; lower "
		                  "RAGG_VERBS_QUEUE_DEPTH or raise RAGG_VERBS_CQ_DEPTH",
		                  dev->name, dev->cq_size,
		                  (dev->cq_committed - (int)dev->srq_depth) / (int)dev->depth);
		return -ENOBUFS;
	}
	/* The ring must hold whatever the CQ holds; grow it first so a
	 * failure leaves both as they were. */
	struct ibv_wc *wc = malloc((size_t)dev->cq->cqe * sizeof(*wc));
	if (!wc)
		return -ENOMEM;
	for (uint32_t i = 0; i < dev->wc_count; i++)
		wc[i] = dev->wc[(dev->wc_head + i) % dev->wc_cap];
	free(dev->wc);
	dev->wc = wc;
	dev->wc_head = 0;
	dev->wc_cap = (uint32_t)dev->cq->cqe;
	ragg__verbs_debug(dev, "%s: completion queue grown from %d to %d entries", dev->name,
	                  dev->cq_size, dev->cq->cqe);
	dev->cq_size = dev->cq->cqe;
	dev->cq_committed += cqes;
	return 0;
}

void ragg__verbs_cq_release(struct ragg__verbs_dev *dev, int cqes)
{
	dev->cq_committed -= cqes;
}

const struct ragg_tp_ops ragg__tp_verbs_ops = {
    .size = sizeof(struct ragg_tp_ops),
    .abi = RAGG_TP_ABI_VERSION,
    .name = "verbs",
    .caps = RAGG_TP_CAP_WRITE_IMM | RAGG_TP_CAP_SEND | RAGG_TP_CAP_INLINE | RAGG_TP_CAP_ZERO_COPY,

    .probe = ragg__verbs_probe,
    .open = ragg__verbs_open,
    .close = ragg__verbs_close,
    .query = ragg__verbs_query,

    .mr_reg = ragg__verbs_mr_reg,
    .mr_dereg = ragg__verbs_mr_dereg,

    .listen = ragg__verbs_listen,
    .connect = ragg__verbs_connect,
    .accept = ragg__verbs_accept,
    .reject = ragg__verbs_reject,
    .ep_close = ragg__verbs_ep_close,

    .write_imm = ragg__verbs_write_imm,
    .send = ragg__verbs_send,

    .poll = ragg__verbs_poll,
    .wait = ragg__verbs_wait,

    /* Registered memory may be any memory; every address is tried. */
    .mem_alloc = NULL,
    .mem_free = NULL,
    .reachable = NULL,
    .arm = ragg__verbs_arm,
    .wait_fd = ragg__verbs_wait_fd,
    .describe = ragg__verbs_describe,
    .seal = ragg__tp_seal_none,
};
