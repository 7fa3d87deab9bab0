/* core/version — the one place the version is written. */
#ifndef CS_CORE_VERSION_H
#define CS_CORE_VERSION_H
#define CS_VERSION "0.1.0"
#endif
