/*
** json_util.h — jansson parsing with dorac's error messages, and a strict
** UTF-8 validator, shared by the io/ parsers. Internal to src/io/.
*/
#ifndef DORAC_IO_JSON_UTIL_H
#define DORAC_IO_JSON_UTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* True when s[0..n) is well-formed UTF-8 (no overlong forms, no surrogates,
** nothing above U+10FFFF), as Rust's str::from_utf8 requires. On false,
** *bad_offset (if not NULL) is the offset of the first bad byte. */
bool dorac_utf8_valid(const char *s, size_t n, size_t *bad_offset);

/* Parses n bytes of JSON (any top-level value) into *out. flags are extra
** jansson decode flags (e.g. JSON_REJECT_DUPLICATES). Invalid UTF-8 and
** syntax errors give DORAC_E_FORMAT with "<name>: ..." naming the byte
** offset or line:column. On failure *out is NULL. */
int dorac_json_parse(json_t **out, const char *buf, size_t n, const char *name, size_t flags);

/* A JSON value's type as a word for messages ("string", "null", ...). */
const char *dorac_json_type_name(const json_t *v);

#endif
