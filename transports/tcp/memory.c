/*
 * Registered regions: software registrations (util/softmr.h). A region is
 * found by the id in a frame's header and admitted only with its key,
 * inside its bounds (progress.c, at the frame's header), so a peer can
 * write only where it was given a descriptor; a stale descriptor is
 * refused rather than writing into someone else's memory.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tcp.h"

int ragg__tcp_mr_reg(struct ragg_tp_dev *d, void *addr, size_t len, struct ragg_tp_mr **out,
                     struct ragg_tp_rdesc *rdesc)
{
	struct ragg__tcp_dev *dev = ragg__tcp_dev(d);
	struct ragg__tcp_mr *mr;
	int rc;

	if (!out)
		return -EINVAL;
	mr = calloc(1, sizeof(*mr));
	if (!mr)
		return -ENOMEM;
	rc = ragg__tp_softmr_reg(&dev->regions, UINT32_MAX / 2, &mr->soft, addr, len,
	                         RAGG__TP_ACCESS_REMOTE_WRITE);
	if (rc) {
		if (rc != -EINVAL)
			ragg__tcp_error(dev, "mr_reg: region table: %s", strerror(-rc));
		goto err_free;
	}
	mr->dev = dev;
	if (rdesc) {
		struct ragg__tcp_rdesc desc = {
			.region = mr->soft.id,
			.key = mr->soft.key,
			.length = len,
		};
		ragg__tcp_rdesc_pack(&desc, rdesc);
	}
	*out = &mr->soft.base;
	return 0;

err_free:
	free(mr);
	return rc;
}

int ragg__tcp_mr_dereg(struct ragg_tp_mr *m)
{
	if (!m)
		return -EINVAL;
	struct ragg__tcp_mr *mr = ragg__container_of(m, struct ragg__tcp_mr, soft.base);
	struct ragg__tcp_dev *dev = mr->dev;
	ragg__tcp_rx_region_gone(dev, mr->soft.id);
	ragg__tp_softmr_dereg(&dev->regions, &mr->soft);
	free(mr);
	return 0;
}

void ragg__tcp_regions_free(struct ragg__tcp_dev *dev)
{
	ragg__tp_idtab_destroy(&dev->regions, free);
}
