/*
 * app/cli — how every command reports errors: one line on stderr,
 * "crmstream: <what>: <why>"; bad usage exits 2.
 */
#include <stdio.h>
#include <stdlib.h>

#include "app/app.h"

void cs_die_usage(const char *what, const char *why)
{
    fprintf(stderr, "crmstream: %s: %s\n", what, why);
    exit(2);
}

void cs_fail(const char *what, const char *why)
{
    fprintf(stderr, "crmstream: %s: %s\n", what, why);
}
