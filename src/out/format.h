/*
 * out/format — the bytes a destination receives. A webhook gets the outbox
 * payload exactly as stored (that is what is signed). A Slack incoming
 * webhook gets {"text": ..., "blocks": [...]} built from the payload's
 * envelope {"type", "timestamp", "text"?, "title"?, "data": {...}} (see
 * docs/OUTBOUND.md), within Slack's block limits; a payload that already has
 * "blocks" is passed through.
 */
#ifndef CS_OUT_FORMAT_H
#define CS_OUT_FORMAT_H

#include <stddef.h>

/* The Slack message for payload (JSON text). Returns a malloc'd string, or
 * NULL when the payload is not a JSON object. */
char *cs_out_slack_format(const char *payload, size_t len);

#endif
