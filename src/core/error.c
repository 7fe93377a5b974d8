/*
** error.c — thread-local error messages (see error.h).
*/
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ERROR_MESSAGE_MAX 1024

static _Thread_local char error_message[ERROR_MESSAGE_MAX];

int dorac_error(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    /* one line: a message never carries a newline into the CLI's output */
    for (char *p = error_message; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return status;
}

int dorac_error_prefix(int status, const char *fmt, ...) {
    char prefix[ERROR_MESSAGE_MAX];
    char old[ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, error_message, sizeof old);
    return dorac_error(status, "%s: %s", prefix, old);
}

void dorac_error_clear(void) { error_message[0] = '\0'; }

const char *dorac_last_error(void) { return error_message; }

const char *dorac_status_name(int status) {
    switch (status) {
    case DORAC_OK: return "DORAC_OK";
    case DORAC_E_INVALID: return "DORAC_E_INVALID";
    case DORAC_E_NOMEM: return "DORAC_E_NOMEM";
    case DORAC_E_IO: return "DORAC_E_IO";
    case DORAC_E_FORMAT: return "DORAC_E_FORMAT";
    case DORAC_E_UNSUPPORTED: return "DORAC_E_UNSUPPORTED";
    case DORAC_E_NUMERIC: return "DORAC_E_NUMERIC";
    case DORAC_E_BACKEND: return "DORAC_E_BACKEND";
    default: return "DORAC_E_UNKNOWN";
    }
}
