/*
** fsutil.c — whole-file reads with a size cap, path joins (see fsutil.h).
*/
#define _POSIX_C_SOURCE 200809L

#include "io/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/size.h"

int dorac_read_file(const char *path, size_t max_bytes, char **data_out, size_t *n_out) {
    *data_out = NULL;
    *n_out = 0;
    if (!path) return dorac_error(DORAC_E_INVALID, "dorac_read_file: path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dorac_error(DORAC_E_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return dorac_error(DORAC_E_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return dorac_error(DORAC_E_IO, "%s: not a regular file", path);
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > (uint64_t)max_bytes) {
        close(fd);
        return dorac_error(DORAC_E_FORMAT, "%s: %lld bytes exceeds the limit of %zu bytes", path,
                           (long long)st.st_size, max_bytes);
    }
    /* The file may change size under us: read at most max_bytes + 1 bytes and
    ** fail if more than max_bytes arrive. */
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate %zu bytes", path, cap + 1);
    }
    for (;;) {
        if (n == cap) {
            if (n > max_bytes) break;
            size_t new_cap;
            if (!dorac_size_add(cap, cap / 2 + 4096, &new_cap) || new_cap > max_bytes + 1)
                new_cap = max_bytes + 1;
            char *grown = realloc(buf, new_cap + 1);
            if (!grown) {
                free(buf);
                close(fd);
                return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate %zu bytes", path, new_cap + 1);
            }
            buf = grown;
            cap = new_cap;
        }
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(buf);
            close(fd);
            return dorac_error(DORAC_E_IO, "%s: read failed: %s", path, strerror(e));
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    close(fd);
    if (n > max_bytes) {
        free(buf);
        return dorac_error(DORAC_E_FORMAT, "%s: more than %zu bytes (the limit)", path, max_bytes);
    }
    buf[n] = '\0';
    *data_out = buf;
    *n_out = n;
    return DORAC_OK;
}

int dorac_path_join(char **out, const char *dir, const char *name) {
    size_t ld = strlen(dir), ln = strlen(name), total;
    int slash = ld > 0 && dir[ld - 1] != '/';
    if (!dorac_size_add(ld, ln, &total) || !dorac_size_add(total, (size_t)slash + 1, &total))
        return dorac_error(DORAC_E_NOMEM, "path too long");
    char *p = malloc(total);
    if (!p) return dorac_error(DORAC_E_NOMEM, "cannot allocate a path of %zu bytes", total);
    memcpy(p, dir, ld);
    if (slash) p[ld] = '/';
    memcpy(p + ld + (size_t)slash, name, ln + 1);
    *out = p;
    return DORAC_OK;
}

bool dorac_is_dir(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool dorac_is_file(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}
