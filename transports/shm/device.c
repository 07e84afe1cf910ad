/*
 * The shm device: one epoll set holding the listener, every endpoint's
 * socket, the device's eventfd and the core's wake fd; the region table;
 * the decision whether peers may write into private memory. Also the ops
 * table, the one symbol this transport exports to the registry.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <sodium.h>

#include "../util/params.h"
#include "../util/stubs.h"
#include "shm.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010 /* Linux 5.1 */
#endif
#ifndef PR_SET_PTRACER
#define PR_SET_PTRACER 0x59616d61
#endif
#ifndef PR_SET_PTRACER_ANY
#define PR_SET_PTRACER_ANY ((unsigned long)-1)
#endif

struct ragg_tp_event *ragg__shm_out_next(struct ragg__shm_out *out, struct ragg__shm_ep *ep,
                                         enum ragg_tp_event_type type)
{
	struct ragg_tp_event *ev = &out->ev[out->n++];
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->ep = &ep->base;
	return ev;
}

int ragg__shm_memfd(struct ragg__shm_dev *dev, const char *name, size_t len, bool seal_writes,
                    void **map)
{
	int rc, fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	void *m = MAP_FAILED;

	if (fd < 0) {
		rc = -errno;
		ragg__shm_error(dev, "memfd_create: %s", strerror(-rc));
		return rc;
	}
	if (ftruncate(fd, (off_t)len) < 0) {
		rc = -errno;
		ragg__shm_error(dev, "memfd of %zu bytes: %s", len, strerror(-rc));
		goto err_close;
	}
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		rc = -errno;
		ragg__shm_error(dev, "mapping a memfd of %zu bytes: %s", len, strerror(-rc));
		goto err_close;
	}
	/* Peers get this fd: a size they cannot change, and where they should
	 * only read, a mapping they cannot make writable. */
	unsigned seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	if (seal_writes && fcntl(fd, F_ADD_SEALS, seals | F_SEAL_FUTURE_WRITE) == 0)
		goto out;
	if (fcntl(fd, F_ADD_SEALS, seals) < 0) {
		rc = -errno;
		ragg__shm_error(dev, "sealing a memfd: %s", strerror(-rc));
		goto err_unmap;
	}
out:
	*map = m;
	return fd;

err_unmap:
	munmap(m, len);
err_close:
	close(fd);
	return rc;
}

int ragg__shm_memfd_check(struct ragg__shm_dev *dev, int fd, size_t len, const char *what)
{
	struct stat st;
	int seals = fcntl(fd, F_GET_SEALS);

	if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
		ragg__shm_error(dev, "the peer's %s is not a memfd sealed against shrinking", what);
		return RAGG_ERR_PROTO;
	}
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < (uint64_t)len) {
		ragg__shm_error(dev, "the peer's %s is shorter than the %zu bytes it claims", what,
		                len);
		return RAGG_ERR_PROTO;
	}
	return 0;
}

/* kernel.yama.ptrace_scope, or -1 without Yama. */
static int yama_scope(void)
{
	char buf[16] = "";
	int fd = open("/proc/sys/kernel/yama/ptrace_scope", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? atoi(buf) : -1;
}

/* Whether peers can write into our private memory with process_vm_writev:
 * 0, or negative with the reason. The kernel has to have it, and the
 * writer needs ptrace access to us, which Yama's ptrace_scope 2 and 3
 * deny to anyone without CAP_SYS_PTRACE. */
static int cma_check(char *why, size_t why_len)
{
	uint8_t a = 1, b = 0;
	struct iovec l = { .iov_base = &a, .iov_len = 1 }, r = { .iov_base = &b, .iov_len = 1 };
	if (process_vm_writev(getpid(), &l, 1, &r, 1, 0) != 1 || b != 1) {
		int rc = -errno;
		if (why && why_len)
			snprintf(why, why_len, "process_vm_writev: %s%s", strerror(-rc),
			         rc == -ENOSYS ? " (kernel without CONFIG_CROSS_MEMORY_ATTACH)"
			                       : " (forbidden by a seccomp filter?)");
		return rc ? rc : -EIO;
	}
	int scope = yama_scope();
	if (scope >= 2) {
		if (why && why_len)
			snprintf(why, why_len,
			         "kernel.yama.ptrace_scope=%d forbids cross-memory attach between "
			         "peers",
			         scope);
		return -EPERM;
	}
	return 0;
}

static int dev_probe(char *why, size_t why_len)
{
	char id[17];
	int rc;

	if (sodium_init() < 0) {
		if (why && why_len)
			snprintf(why, why_len, "libsodium failed to initialise");
		return -ENOSYS;
	}
	int fd = memfd_create("ragg-shm-probe", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		rc = -errno;
		if (why && why_len)
			snprintf(why, why_len, "memfd_create: %s", strerror(-rc));
		return rc;
	}
	close(fd);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		if (why && why_len)
			snprintf(why, why_len, "socket(AF_UNIX, SOCK_SEQPACKET): %s",
			         strerror(-rc));
		return rc;
	}
	close(fd);
	if ((rc = ragg__shm_host_id(id, why, why_len)))
		return rc;
	rc = cma_check(why, why_len);
	if (rc == -ENOSYS)
		return rc;
	if (rc && why && why_len) {
		/* Usable still, for memory from mem_alloc; say so, the core
		 * logs what probe wrote. */
		char reason[160];
		snprintf(reason, sizeof(reason), "%s", why);
		snprintf(why, why_len,
		         "usable, but %s: only memory from mem_alloc can receive writes", reason);
	}
	return 0;
}

static void cma_decide(struct ragg__shm_dev *dev)
{
	dev->cma = false;
	if (!dev->cfg.cma) {
		snprintf(dev->cma_why, sizeof(dev->cma_why), "RAGG_SHM_CMA=0");
		return;
	}
	if (cma_check(dev->cma_why, sizeof(dev->cma_why)))
		return;
	/* Yama's scope 1 lets only ancestors attach; a peer is none, so name
	 * "anyone": the usual ptrace checks (same user, not setuid) still
	 * hold, and without Yama this is a no-op. */
	if (yama_scope() == 1 && prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0) < 0) {
		snprintf(dev->cma_why, sizeof(dev->cma_why), "prctl(PR_SET_PTRACER): %s",
		         strerror(errno));
		return;
	}
	dev->cma = true;
}

static int dev_open(const struct ragg_tp_params *params, struct ragg_tp_dev **out)
{
	struct ragg__shm_dev *dev;
	char why[160] = "";
	int rc;

	if (!params || !out || params->size < offsetof(struct ragg_tp_params, wake_fd))
		return -EINVAL;
	if (sodium_init() < 0)
		return -ENOSYS;
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	ragg__tp_params_copy(&dev->base.params, params);
	dev->base.ops = &ragg__tp_shm_ops;
	dev->lfd = dev->efd = dev->gens_fd = dev->wake_fd = -1;
	ragg__shm_list_init(&dev->eps);
	ragg__shm_list_init(&dev->dead);

	if ((rc = ragg__shm_config_read(dev, &dev->cfg)))
		goto err_free;
	if ((rc = ragg__shm_host_id(dev->host_id, why, sizeof(why)))) {
		ragg__shm_error(dev, "%s", why);
		goto err_free;
	}
	dev->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (dev->epfd < 0) {
		rc = -errno;
		ragg__shm_error(dev, "epoll_create1: %s", strerror(-rc));
		goto err_free;
	}
	dev->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (dev->efd < 0) {
		rc = -errno;
		ragg__shm_error(dev, "eventfd: %s", strerror(-rc));
		goto err_epoll;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = RAGG__SHM_TAG_EVENT };
	if (epoll_ctl(dev->epfd, EPOLL_CTL_ADD, dev->efd, &ev) < 0) {
		rc = -errno;
		ragg__shm_error(dev, "epoll_ctl(eventfd): %s", strerror(-rc));
		goto err_efd;
	}
	if ((rc = ragg__shm_wake_sync(dev)))
		goto err_efd;
	if ((rc = ragg__shm_regions_init(dev)))
		goto err_efd;
	cma_decide(dev);
	if (!dev->cma)
		ragg__shm_info(dev, "peers cannot write into memory not from mem_alloc: %s",
		               dev->cma_why);
	ragg__shm_debug(dev, "device open (host %s, queue depth %zu, %zu regions)", dev->host_id,
	                dev->cfg.queue_depth, dev->cfg.max_regions);
	*out = &dev->base;
	return 0;

err_efd:
	close(dev->efd);
err_epoll:
	close(dev->epfd);
err_free:
	free(dev);
	return rc;
}

static void dev_close(struct ragg_tp_dev *d)
{
	if (!d)
		return;
	struct ragg__shm_dev *dev = ragg__shm_dev(d);
	while (!ragg__shm_list_empty(&dev->eps))
		ragg__shm_ep_free(ragg__container_of(dev->eps.next, struct ragg__shm_ep, link));
	while (!ragg__shm_list_empty(&dev->dead))
		ragg__shm_ep_free(ragg__container_of(dev->dead.next, struct ragg__shm_ep, link));
	if (dev->lfd >= 0) {
		close(dev->lfd);
		ragg__tp_accept_guard_fini(&dev->accept_guard);
	}
	ragg__shm_regions_free(dev);
	close(dev->efd);
	close(dev->epfd);
	free(dev);
}

static int dev_query(struct ragg_tp_dev *d, struct ragg_tp_attr *attr)
{
	struct ragg__shm_dev *dev = ragg__shm_dev(d);
	if (!attr)
		return -EINVAL;
	struct ragg_tp_attr a = {
		.size = sizeof(a),
		.max_write = (size_t)1 << 48,
		.max_inline = 0,
		.max_priv = RAGG_TP_PRIV_MAX,
		.queue_depth = (int)dev->cfg.queue_depth,
	};
	snprintf(a.device, sizeof(a.device), "shm");
	*attr = a;
	return 0;
}

const struct ragg_tp_ops ragg__tp_shm_ops = {
	.size = sizeof(struct ragg_tp_ops),
	.abi = RAGG_TP_ABI_VERSION,
	.name = "shm",
	.caps = RAGG_TP_CAP_WRITE_IMM | RAGG_TP_CAP_SEND | RAGG_TP_CAP_ZERO_COPY |
	        RAGG_TP_CAP_LOCAL_ONLY,

	.probe = dev_probe,
	.open = dev_open,
	.close = dev_close,
	.query = dev_query,

	.mr_reg = ragg__shm_mr_reg,
	.mr_dereg = ragg__shm_mr_dereg,

	.listen = ragg__shm_listen,
	.connect = ragg__shm_connect,
	.accept = ragg__shm_accept,
	.reject = ragg__shm_reject,
	.ep_close = ragg__shm_ep_close,

	.write_imm = ragg__shm_write_imm,
	.send = ragg__shm_send,

	.poll = ragg__shm_poll,
	.wait = ragg__shm_wait,

	.mem_alloc = ragg__shm_mem_alloc,
	.mem_free = ragg__shm_mem_free,
	.reachable = ragg__shm_reachable,
	.arm = ragg__shm_arm,
	.wait_fd = ragg__shm_wait_fd,
	.peer_map = ragg__shm_peer_map,
	.describe = ragg__tp_describe_none,
	.seal = ragg__tp_seal_none,
};
