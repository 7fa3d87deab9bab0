/*
 * signals/sigconfig — the `signals:` section of the configuration file: the
 * thresholds of every signal definition (cs_sig_config) and of signup_abuse
 * (cs_abuse_config, with its extra domain lists), applied over the
 * defaults. core/config.c hands the section's node to cs_sig_settings_yaml
 * and keeps the result in cs_config.signals; the pipeline builds its engines
 * from it with cs_sig_config_from / cs_abuse_config_from. The key table here
 * also generates the signals rows of docs/CONFIG.md.
 *
 * Never reads files. Unknown keys and out-of-range values are errors that
 * name the key (signals.<path>) and its file:line:column, like core/config.
 *
 * Memory: the domain lists are bounded (CS_SIG_MAX_DOMAINS names of at most
 * 127 bytes each).
 */
#ifndef CS_SIGNALS_SIGCONFIG_H
#define CS_SIGNALS_SIGCONFIG_H

#include <stdio.h>
#include <yaml.h>

#include "core/config.h"
#include "signals/abuse.h"
#include "signals/signals.h"

#define CS_SIG_MAX_DOMAINS 100000

typedef struct cs_sig_settings {
    cs_sig_config   sig;
    cs_abuse_config abuse;       /* its disposable / free_mail point into the lists below */
    char          **disposable;  /* signals.signup_abuse.disposable_domains */
    size_t          n_disposable;
    char          **free_mail;   /* signals.signup_abuse.free_mail_domains */
    size_t          n_free_mail;
} cs_sig_settings;

/* Defaults (cs_sig_config_defaults, cs_abuse_config_defaults, no extra domains). */
void cs_sig_settings_defaults(cs_sig_settings *s);
void cs_sig_settings_free(cs_sig_settings *s); /* NULL ok; frees s too */

/* Override *s (allocated with the defaults when NULL) from map, the value of
 * the top-level `signals` key; name is the file name for messages. Returns
 * 0, or -1 with err set; *s is only changed when the whole section is valid. */
int cs_sig_settings_yaml(cs_sig_settings **s, yaml_document_t *doc, yaml_node_t *map, const char *name, char *err,
                         size_t errlen);

/* What the pipeline builds its engines from: cfg->signals, or the defaults
 * when the file has no signals section. The abuse config's domain lists
 * borrow from cfg (pass it to cs_abuse_new while cfg lives). */
void cs_sig_config_from(const cs_config *cfg, cs_sig_config *out);
void cs_abuse_config_from(const cs_config *cfg, cs_abuse_config *out);

/* Rows of docs/CONFIG.md's table for every signals.* key. */
void cs_sig_config_reference(FILE *out);

/* Override c from map (signal definitions only; signup_abuse keys are
 * accepted and ignored). Returns 0, or -1 with err set. */
int cs_sig_config_yaml(cs_sig_config *c, yaml_document_t *doc, yaml_node_t *map, const char *name, char *err,
                       size_t errlen);

/* The same from a YAML text whose root holds a `signals:` mapping (tests,
 * tools). A text without one leaves c unchanged. */
int cs_sig_config_yaml_string(cs_sig_config *c, const char *yaml, char *err, size_t errlen);

#endif
