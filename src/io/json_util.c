/*
** json_util.c — UTF-8 validation and jansson parsing (see json_util.h).
*/
#include "io/json_util.h"

#include "core/error.h"

bool dorac_utf8_valid(const char *str, size_t n, size_t *bad_offset) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;        /* no overlong 3-byte forms */
            else if (c == 0xED) hi = 0x9F;   /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;        /* no overlong 4-byte forms */
            else if (c == 0xF4) hi = 0x8F;   /* nothing above U+10FFFF */
        } else {
            if (bad_offset) *bad_offset = i;
            return false;
        }
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) {
            if (bad_offset) *bad_offset = i;
            return false;
        }
        for (size_t k = 2; k < len; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) {
                if (bad_offset) *bad_offset = i;
                return false;
            }
        }
        i += len;
    }
    return true;
}

int dorac_json_parse(json_t **out, const char *buf, size_t n, const char *name, size_t flags) {
    *out = NULL;
    size_t bad;
    if (!dorac_utf8_valid(buf, n, &bad))
        return dorac_error(DORAC_E_FORMAT, "%s: not valid UTF-8 (byte 0x%02x at offset %zu)", name,
                           (unsigned)(unsigned char)buf[bad], bad);
    json_error_t err;
    json_t *root = json_loadb(buf, n, JSON_DECODE_ANY | flags, &err);
    if (!root)
        return dorac_error(DORAC_E_FORMAT, "%s:%d:%d: invalid JSON: %s", name, err.line, err.column, err.text);
    *out = root;
    return DORAC_OK;
}

const char *dorac_json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    default: return "value";
    }
}
