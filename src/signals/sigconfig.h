/*
 * signals/sigconfig — the `signals:` section of the configuration file,
 * applied over cs_sig_config_defaults. core/config.c owns the file and calls
 * this with the section's node (wiring left to the config owner); every key
 * is listed in docs/SIGNALS.md.
 *
 * Never reads files. Unknown keys and out-of-range values are errors that
 * name the key and its line:column, like core/config.
 */
#ifndef CS_SIGNALS_SIGCONFIG_H
#define CS_SIGNALS_SIGCONFIG_H

#include <yaml.h>

#include "signals/signals.h"

/* Override c from map (the value of the top-level `signals` key). name is the
 * file name for messages. Returns 0, or -1 with err set; c is only changed
 * when the whole section is valid (cs_sig_config_check passes). */
int cs_sig_config_yaml(cs_sig_config *c, yaml_document_t *doc, yaml_node_t *map, const char *name, char *err,
                       size_t errlen);

/* The same from a YAML text whose root holds a `signals:` mapping (tests,
 * tools). A text without one leaves c unchanged. */
int cs_sig_config_yaml_string(cs_sig_config *c, const char *yaml, char *err, size_t errlen);

#endif
