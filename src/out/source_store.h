/*
 * out/source_store — the outbox source (cs_out_source of out.h) over the
 * store's `outbox` table (store.h outbox ops), with the semantics
 * source_mem.c pins: claims are leases, a claim whose lease expired is due
 * again, reports count only for a claimed row, release gives a claim back
 * untouched (due at once, same id).
 *
 * Give it a store handle of the dispatcher's own (cs_store_open a second
 * time): its calls then never queue behind the HTTP readers of the main
 * handle. Each report also counts crmstream_webhook_deliveries_total and,
 * for a payload with received_at, crmstream_webhook_latency_seconds.
 */
#ifndef CS_OUT_SOURCE_STORE_H
#define CS_OUT_SOURCE_STORE_H

#include "out/out.h"
#include "store/store.h"

/* The source to put in cs_out_opts (borrows st; ctx is st). */
cs_out_source cs_out_store_source(cs_store *st);

#endif
