/*
 * Memory registration. A region is registered once, with local write (so it
 * can be a write source and the target of a peer's write) and remote write,
 * never remote read or atomics: a peer can only put bytes into it. The
 * descriptor a peer receives is exactly (address, rkey, length), packed
 * little-endian so mixed-endian peers agree.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>

#include "verbs.h"

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

struct ibv_mr *ragg__verbs_reg(struct ragg__verbs_dev *dev, void *addr, size_t len, int access,
                               const char *what, int *rc)
{
	struct ibv_mr *mr = ibv_reg_mr(dev->pd, addr, len, access);
	if (mr)
		return mr;
	int err = errno;
	struct rlimit rl;
	/*
	 * Registration pins pages; without CAP_IPC_LOCK the kernel refuses
	 * beyond RLIMIT_MEMLOCK with ENOMEM (some drivers say EPERM). That is
	 * the usual first failure on a fresh machine or container, so name
	 * the limit and how to raise it.
	 */
	if ((err == ENOMEM || err == EPERM) && getrlimit(RLIMIT_MEMLOCK, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY) {
		ragg__verbs_error(dev,
		                  "%s: registering %zu bytes of %s failed (%s): the locked-memory "
		                  "limit is %llu KiB (RLIMIT_MEMLOCK); raise it with `ulimit -l "
		                  "unlimited` (limits.conf: `* - memlock unlimited`; systemd: "
		                  "LimitMEMLOCK=infinity; docker: --ulimit memlock=-1)",
		                  dev->name, len, what, strerror(err),
		                  (unsigned long long)(rl.rlim_cur / 1024));
		*rc = RAGG_ERR_MEMLOCK;
		return NULL;
	}
	ragg__verbs_error(dev, "%s: ibv_reg_mr(%zu bytes of %s) failed: %s", dev->name, len, what,
	                  strerror(err));
	*rc = err ? -err : -ENOMEM;
	return NULL;
}

int ragg__verbs_mr_reg(struct ragg_tp_dev *d, void *addr, size_t len, struct ragg_tp_mr **out,
                       struct ragg_tp_rdesc *rdesc)
{
	struct ragg__verbs_dev *dev = ragg__verbs_dev(d);
	int rc;
	if (!addr && len)
		return -EINVAL;
	/* Registration pins every page. More than the machine's RAM can
	 * never be pinned, and trying makes the kernel's OOM killer, not an
	 * error code, end the attempt. */
	struct sysinfo si;
	if (sysinfo(&si) == 0 && (uint64_t)len / si.mem_unit > (uint64_t)si.totalram) {
		ragg__verbs_error(dev,
		                  "%s: cannot register %zu bytes: registered memory is pinned, and "
		                  "this machine has %llu MiB of RAM",
		                  dev->name, len,
		                  (unsigned long long)((uint64_t)si.totalram * si.mem_unit >> 20));
		return -ENOMEM;
	}
	struct ragg__verbs_mr *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	/* Zero bytes still get a real (one-byte) registration: a 0-byte
	 * write into the region needs a valid rkey at the peer. */
	static uint8_t empty;
	m->mr = ragg__verbs_reg(dev, len ? addr : &empty, len ? len : 1,
	                        IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, "memory", &rc);
	if (!m->mr) {
		free(m);
		return rc;
	}
	m->dev = dev;
	m->base.addr = addr;
	m->base.len = len;
	struct ragg_tp_rdesc r;
	memset(&r, 0, sizeof(r));
	r.len = RAGG__VERBS_RDESC_LEN;
	put64(r.blob, (uint64_t)(uintptr_t)m->mr->addr);
	uint32_t rkey = m->mr->rkey;
	for (int i = 0; i < 4; i++)
		r.blob[8 + i] = (uint8_t)(rkey >> (8 * i));
	put64(r.blob + 12, (uint64_t)len);
	*rdesc = r;
	*out = &m->base;
	return 0;
}

int ragg__verbs_mr_dereg(struct ragg_tp_mr *mm)
{
	if (!mm)
		return 0;
	struct ragg__verbs_mr *m = ragg__verbs_mr(mm);
	int rc = 0;
	if (ibv_dereg_mr(m->mr)) {
		rc = -errno;
		ragg__verbs_error(m->dev, "ibv_dereg_mr: %s", strerror(errno));
	}
	free(m);
	return rc;
}

bool ragg__verbs_rdesc_unpack(const struct ragg_tp_rdesc *r, uint64_t *addr, uint32_t *rkey,
                              uint64_t *len)
{
	if (r->len != RAGG__VERBS_RDESC_LEN)
		return false;
	*addr = get64(r->blob);
	*rkey = (uint32_t)r->blob[8] | (uint32_t)r->blob[9] << 8 | (uint32_t)r->blob[10] << 16 |
	        (uint32_t)r->blob[11] << 24;
	*len = get64(r->blob + 12);
	return true;
}
