/*
 * Registered regions. A region is found by the id in a frame's header and
 * admitted only with its 64-bit key, drawn from libsodium's CSPRNG at
 * registration, so a peer can write only where it was given a descriptor.
 * A freed id may be reused; the new region gets a new key, so a stale
 * descriptor is refused rather than writing into someone else's memory.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "tcp.h"

int ragg__tcp_mr_reg(struct ragg_tp_dev *d, void *addr, size_t len, struct ragg_tp_mr **out,
                     struct ragg_tp_rdesc *rdesc)
{
	struct ragg__tcp_dev *dev = ragg__tcp_dev(d);
	struct ragg__tcp_mr *mr;
	uint32_t id;
	int rc;

	if (!out || (!addr && len) || (uintptr_t)addr > UINTPTR_MAX - len)
		return -EINVAL;
	mr = calloc(1, sizeof(*mr));
	if (!mr)
		return -ENOMEM;
	rc = ragg__tp_idtab_free_id(&dev->regions, UINT32_MAX / 2, &id);
	if (rc) {
		ragg__tcp_error(dev, "mr_reg: region table: %s", strerror(-rc));
		goto err_free;
	}
	mr->base.addr = addr;
	mr->base.len = len;
	mr->dev = dev;
	mr->id = id;
	randombytes_buf(&mr->key, sizeof(mr->key));
	ragg__tp_idtab_set(&dev->regions, id, mr);
	if (rdesc) {
		struct ragg__tcp_rdesc desc = { .region = id, .key = mr->key, .length = len };
		ragg__tcp_rdesc_pack(&desc, rdesc);
	}
	*out = &mr->base;
	return 0;

err_free:
	free(mr);
	return rc;
}

int ragg__tcp_mr_dereg(struct ragg_tp_mr *m)
{
	if (!m)
		return -EINVAL;
	struct ragg__tcp_mr *mr = ragg__container_of(m, struct ragg__tcp_mr, base);
	struct ragg__tcp_dev *dev = mr->dev;
	ragg__tcp_rx_region_gone(dev, mr->id);
	ragg__tp_idtab_set(&dev->regions, mr->id, NULL);
	sodium_memzero(&mr->key, sizeof(mr->key));
	free(mr);
	return 0;
}

void ragg__tcp_regions_free(struct ragg__tcp_dev *dev)
{
	ragg__tp_idtab_destroy(&dev->regions, free);
}
