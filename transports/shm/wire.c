/* Packing of the shm region descriptor (see wire.h). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "wire.h"

void ragg__shm_rdesc_pack(const struct ragg__shm_rdesc *d, struct ragg_tp_rdesc *out)
{
	memset(out, 0, sizeof(*out));
	out->len = RAGG__SHM_RDESC_LEN;
	out->blob[0] = RAGG__SHM_RDESC_FORMAT;
	out->blob[1] = d->kind;
	memcpy(out->blob + 2, &d->region, 4);
	memcpy(out->blob + 6, &d->key, 8);
	memcpy(out->blob + 14, &d->length, 8);
}

int ragg__shm_rdesc_unpack(const struct ragg_tp_rdesc *in, struct ragg__shm_rdesc *d)
{
	if (!in || in->len != RAGG__SHM_RDESC_LEN || in->blob[0] != RAGG__SHM_RDESC_FORMAT)
		return -EINVAL;
	if (in->blob[1] != RAGG__SHM_KIND_SHARED && in->blob[1] != RAGG__SHM_KIND_PRIVATE)
		return -EINVAL;
	d->kind = in->blob[1];
	memcpy(&d->region, in->blob + 2, 4);
	memcpy(&d->key, in->blob + 6, 8);
	memcpy(&d->length, in->blob + 14, 8);
	return 0;
}
