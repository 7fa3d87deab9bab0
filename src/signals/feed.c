/*
 * signals/feed.c — batched replay of log records into an engine (feed.h).
 */
#include "signals/feed.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "signals/decode.h"

void cs_sig_feed_init(cs_sig_feed *f, cs_sig_engine *e)
{
    memset(f, 0, sizeof *f);
    f->e = e;
    f->ev = cs_malloc(CS_SIG_FEED_BATCH * sizeof *f->ev);
    f->ids = cs_malloc((size_t)CS_SIG_FEED_BATCH * (CS_SIG_ID_MAX + 1));
    f->rc = cs_malloc(CS_SIG_FEED_BATCH * sizeof *f->rc);
    cs_sig_changes_init(&f->ch);
}

void cs_sig_feed_flush(cs_sig_feed *f, cs_sig_changes *out)
{
    if (!f->n) return;
    cs_sig_changes *ch = out ? out : &f->ch;
    f->applied += cs_sig_apply_batch(f->e, f->ev, f->n, f->rc, ch);
    for (size_t i = 0; i < f->n; i++) {
        f->late += f->rc[i] == CS_SIG_LATE;
        f->refused += f->rc[i] == CS_SIG_FULL;
        f->invalid += f->rc[i] == CS_SIG_EINVAL;
    }
    f->n = 0;
    cs_sig_changes_reset(&f->ch);
}

int cs_sig_feed_add_event(cs_sig_feed *f, const cs_sig_event *in)
{
    f->records++;
    if (!in->account_id || in->account_len == 0 || in->account_len > CS_SIG_ID_MAX) {
        f->invalid++;
        return CS_SIG_EINVAL;
    }
    cs_sig_event *ev = &f->ev[f->n];
    *ev = *in;
    char *id = f->ids + f->n * (CS_SIG_ID_MAX + 1);
    memcpy(id, in->account_id, in->account_len);
    id[in->account_len] = 0;
    ev->account_id = id;
    ev->type_name = NULL;
    ev->type_len = 0;
    if (++f->n == CS_SIG_FEED_BATCH) cs_sig_feed_flush(f, NULL);
    return 0;
}

int cs_sig_feed_add(cs_sig_feed *f, const char *json, size_t len)
{
    f->records++;
    cJSON *tree = NULL;
    cs_sig_event *ev = &f->ev[f->n];
    int rc = cs_sig_decode_json(json, len, ev, &tree);
    if (rc == 0 && (ev->account_len == 0 || ev->account_len > CS_SIG_ID_MAX)) rc = CS_SIG_EINVAL;
    if (rc != 0) {
        cJSON_Delete(tree);
        f->invalid++;
        return CS_SIG_EINVAL;
    }
    /* the account id outlives the record: copy it (every other field is a value or a hash) */
    char *id = f->ids + f->n * (CS_SIG_ID_MAX + 1);
    memcpy(id, ev->account_id, ev->account_len);
    id[ev->account_len] = 0;
    ev->account_id = id;
    ev->type_name = NULL; /* borrowed from the record: gone after this call */
    ev->type_len = 0;
    cJSON_Delete(tree);
    if (++f->n == CS_SIG_FEED_BATCH) cs_sig_feed_flush(f, NULL);
    return 0;
}

void cs_sig_feed_free(cs_sig_feed *f)
{
    if (f->e) cs_sig_feed_flush(f, NULL);
    free(f->ev);
    free(f->ids);
    free(f->rc);
    cs_sig_changes_free(&f->ch);
    memset(f, 0, sizeof *f);
}
