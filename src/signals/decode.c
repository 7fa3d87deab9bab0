/*
 * signals/decode.c — canonical event JSON to cs_sig_event (see decode.h).
 */
#include "signals/decode.h"

#include <string.h>

#include "core/util.h"

static const char *str_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int32_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int cs_sig_parse_day(const char *s, int32_t *day)
{
    if (!s) return -1;
    size_t n = strlen(s);
    if (n == 10) {
        for (int i = 0; i < 10; i++)
            if (i == 4 || i == 7 ? s[i] != '-' : (s[i] < '0' || s[i] > '9')) return -1;
        int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
        int m = (s[5] - '0') * 10 + (s[6] - '0'), d = (s[8] - '0') * 10 + (s[9] - '0');
        static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1]) return -1;
        if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return -1;
        *day = days_from_civil(y, m, d);
        return 0;
    }
    int64_t us;
    if (cs_parse_time(s, &us)) return -1;
    int64_t dd = us / 86400000000LL;
    if (us % 86400000000LL < 0) dd--;
    *day = (int32_t)dd;
    return 0;
}

static enum cs_sig_type type_of(const char *t)
{
    switch (t[0]) {
    case 'F': if (strcmp(t, "FeatureUsed") == 0) return CS_SIG_EV_FEATURE_USED; break;
    case 'T': if (strcmp(t, "TrialActivated") == 0) return CS_SIG_EV_TRIAL_ACTIVATED; break;
    case 'S':
        if (strcmp(t, "SubscriptionUpgraded") == 0) return CS_SIG_EV_SUBSCRIPTION_UPGRADED;
        if (strcmp(t, "SupportCaseEscalated") == 0) return CS_SIG_EV_SUPPORT_ESCALATED;
        break;
    case 'L': if (strcmp(t, "LeadCreated") == 0) return CS_SIG_EV_LEAD; break;
    case 'D': if (strcmp(t, "DemoRequested") == 0) return CS_SIG_EV_LEAD; break;
    default: break;
    }
    return CS_SIG_EV_OTHER;
}

int cs_sig_decode(const cJSON *obj, cs_sig_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->renewal_day = CS_SIG_NO_DAY;
    ev->ts_us = INT64_MIN;
    const char *type = str_of(obj, "type");
    const char *acc = str_of(obj, "account_id");
    const char *ts = str_of(obj, "timestamp");
    if (!type || !acc || !*acc || !ts || cs_parse_time(ts, &ev->ts_us)) return CS_SIG_EINVAL;
    ev->type = type_of(type);
    ev->account_id = acc;
    ev->account_len = strlen(acc);
    ev->account_hash = cs_sig_hash(acc, ev->account_len);
    const char *user = str_of(obj, "user_id");
    if (user && *user) ev->user_hash = cs_sig_hash(user, strlen(user));
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(obj, "properties");
    ev->plan_tier = cs_sig_tier_parse(str_of(obj, "plan_tier"));
    if (!cJSON_IsObject(props)) props = NULL;
    if (props) {
        int32_t d;
        if (cs_sig_parse_day(str_of(props, "renewal_date"), &d) == 0) ev->renewal_day = d;
    }
    switch (ev->type) {
    case CS_SIG_EV_FEATURE_USED: {
        const char *f = str_of(props, "feature");
        if (f && *f) ev->feature_hash = cs_sig_hash(f, strlen(f));
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(props, "count");
        double n = cJSON_IsNumber(c) ? c->valuedouble : 1;
        ev->count = n >= 1 && n <= 65535 ? (uint32_t)n : (n > 65535 ? 65535u : 1u);
        break;
    }
    case CS_SIG_EV_SUBSCRIPTION_UPGRADED: {
        enum cs_sig_tier t = cs_sig_tier_parse(str_of(props, "plan_tier"));
        if (t != CS_SIG_TIER_NONE) ev->plan_tier = t;
        break;
    }
    case CS_SIG_EV_TRIAL_ACTIVATED: {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(props, "trial_days");
        if (cJSON_IsNumber(d) && d->valuedouble >= 1 && d->valuedouble <= 255) ev->trial_days = (int)d->valuedouble;
        break;
    }
    default:
        break;
    }
    return 0;
}
