/*
** fsutil.h — small filesystem helpers shared by the io/ parsers.
**
** Reading a whole file always takes a byte limit: every file read here is
** untrusted, and a config that claims to be 50 GB must fail with a message,
** not exhaust memory. Messages name the path as the caller gave it.
*/
#ifndef DORAC_IO_FSUTIL_H
#define DORAC_IO_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

/* Reads the regular file at path into a malloc'd buffer with a NUL byte
** appended (not counted in *n_out), so text parsers may treat it as a C
** string. Fails with DORAC_E_IO when the file cannot be opened or read (or is
** not a regular file), DORAC_E_FORMAT when it holds more than max_bytes, and
** DORAC_E_NOMEM. On failure *data_out is NULL and *n_out is 0. */
int dorac_read_file(const char *path, size_t max_bytes, char **data_out, size_t *n_out);

/* Stores a malloc'd "dir/name" in *out ("name" alone when dir is "" and no
** doubled slash when dir ends in '/'). DORAC_E_NOMEM on failure. */
int dorac_path_join(char **out, const char *dir, const char *name);

/* True when path names a directory (following symlinks). */
bool dorac_is_dir(const char *path);

/* True when path names a regular file (following symlinks). */
bool dorac_is_file(const char *path);

#endif
