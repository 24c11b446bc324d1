/*
 * open.c - sto_open(): picks the store kind the config names and opens it.
 * The one file that knows both implementations, so that dependencies point
 * one way (sto_internal.h, "Layers"). Owner thread.
 */
#include "storage/sto_internal.h"

int sto_open(const struct sto_config *cfg, struct sto_flusher *fl, struct sto **out,
             struct dl_errctx *err)
{
	*out = NULL;
	if (cfg == NULL)
		return dl_errf(err, DL_EINVAL, "no config");
	if (cfg->type == STO_TYPE_MEMORY)
		return sto_mem_open(cfg, fl, out, err);
	if (cfg->type == STO_TYPE_MMAP)
		return sto_mmap_open(cfg, fl, out, err);
	return dl_errf(err, DL_ECONFIG, "storeType %d unknown", (int)cfg->type);
}
