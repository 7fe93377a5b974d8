/*
** error.h — the library's one error channel.
**
** A failing function records a one-line message with dorac_error() and
** returns the status it was given, so call sites read
**     return dorac_error(DORAC_E_INVALID, "%s: rank %d exceeds min(in,out)=%lld", ...);
** The message lives in a thread-local buffer; dorac_last_error() returns it.
** The library never prints: the CLI decides what to show.
*/
#ifndef DORAC_CORE_ERROR_H
#define DORAC_CORE_ERROR_H

#include "dorac.h"

#if defined(__GNUC__)
#define DORAC_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DORAC_PRINTF(f, a)
#endif

/* Records the message (truncated to 1 KiB) and returns status. */
int dorac_error(int status, const char *fmt, ...) DORAC_PRINTF(2, 3);

/* Prefixes the current message with "<prefix>: ", keeping the status.
** Used when a caller knows context (a file name) that the callee did not. */
int dorac_error_prefix(int status, const char *fmt, ...) DORAC_PRINTF(2, 3);

/* Clears the message. */
void dorac_error_clear(void);

/* Evaluates a status expression and returns it from the enclosing function
** if it failed. */
#define DORAC_TRY(expr)                                                        \
    do {                                                                       \
        int dorac_try_status_ = (expr);                                        \
        if (dorac_try_status_ != DORAC_OK) return dorac_try_status_;           \
    } while (0)

#endif
