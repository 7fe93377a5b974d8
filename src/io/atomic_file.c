/*
** atomic_file.c — atomic file and folder writes (see atomic_file.h).
**
** Invariants:
**   - A temp name is always in the same folder as its final name, so the
**     rename never crosses a filesystem.
**   - Temp names are unique within the process (an atomic counter) and
**     across processes (the pid), and are created with O_EXCL / mkdir, so two
**     writers never share one.
**   - Every failure path removes what it created, except the one documented
**     case of an old folder copy that could not be deleted after a commit.
*/
#define _GNU_SOURCE /* renameat2, RENAME_EXCHANGE, fdopendir, openat */

#include "io/atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "core/error.h"
#include "core/size.h"
#include "io/fsutil.h"

static atomic_ulong temp_counter;

/* Deepest folder nesting removed or fsynced recursively; deeper trees are
** refused rather than risking the stack. */
#define TREE_MAX_DEPTH 64

struct dorac_atomic_file {
    int fd;           /* open temp file, or -1 once closed */
    int status;       /* first write failure, or DORAC_OK */
    char *tmp_path;   /* "<dir>/.<name>.tmp-<pid>-<n>" */
    char *final_path; /* as given by the caller */
};

/* Splits path into a malloc'd folder part ("." when there is no slash) and a
** pointer to the last component inside path. Trailing slashes must have been
** removed by the caller. */
static int split_path(const char *path, char **dir_out, const char **base_out) {
    const char *slash = strrchr(path, '/');
    const char *dir_src = ".";
    size_t dir_len = 1;
    if (slash) {
        dir_src = path;
        dir_len = slash == path ? 1 : (size_t)(slash - path);
    }
    char *dir = malloc(dir_len + 1);
    if (!dir) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate a path", path);
    memcpy(dir, dir_src, dir_len);
    dir[dir_len] = '\0';
    *dir_out = dir;
    *base_out = slash ? slash + 1 : path;
    return DORAC_OK;
}

/* "<dir>/.<base>.<tag>-<pid>-<n>" into a malloc'd string. */
static int sibling_name(char **out, const char *dir, const char *base, const char *tag) {
    unsigned long n = atomic_fetch_add(&temp_counter, 1);
    int len = snprintf(NULL, 0, "%s/.%s.%s-%ld-%lu", dir, base, tag, (long)getpid(), n);
    if (len < 0) return dorac_error(DORAC_E_INVALID, "%s: cannot format a temp name", base);
    char *p = malloc((size_t)len + 1);
    if (!p) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate a temp name", base);
    snprintf(p, (size_t)len + 1, "%s/.%s.%s-%ld-%lu", dir, base, tag, (long)getpid(), n);
    *out = p;
    return DORAC_OK;
}

/* fsync on a folder; filesystems that cannot sync folders (EINVAL) are
** accepted, since there is nothing more to do there. */
static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return dorac_error(DORAC_E_IO, "%s: cannot open folder to fsync: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL && e != ENOTSUP)
        return dorac_error(DORAC_E_IO, "%s: fsync of folder failed: %s", dir, strerror(e));
    return DORAC_OK;
}

static int write_all(int fd, const void *data, size_t n, const char *path) {
    const char *p = data;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return dorac_error(DORAC_E_IO, "%s: write failed: %s", path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return DORAC_OK;
}

static void free_file(dorac_atomic_file *f) {
    free(f->tmp_path);
    free(f->final_path);
    free(f);
}

int dorac_atomic_file_open(dorac_atomic_file **out, const char *path) {
    if (!out) return dorac_error(DORAC_E_INVALID, "dorac_atomic_file_open: out is NULL");
    *out = NULL;
    if (!path || !path[0]) return dorac_error(DORAC_E_INVALID, "dorac_atomic_file_open: empty path");
    size_t len = strlen(path);
    if (path[len - 1] == '/') return dorac_error(DORAC_E_INVALID, "%s: a file path must not end in '/'", path);
    dorac_atomic_file *f = calloc(1, sizeof *f);
    if (!f) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", path);
    f->fd = -1;
    f->final_path = strdup(path);
    char *dir = NULL;
    const char *base = NULL;
    int rc = f->final_path ? split_path(path, &dir, &base) : dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", path);
    if (rc == DORAC_OK) rc = sibling_name(&f->tmp_path, dir, base, "tmp");
    free(dir);
    if (rc != DORAC_OK) {
        free_file(f);
        return rc;
    }
    f->fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (f->fd < 0) {
        rc = dorac_error(DORAC_E_IO, "%s: cannot create temp file %s: %s", path, f->tmp_path, strerror(errno));
        free_file(f);
        return rc;
    }
    *out = f;
    return DORAC_OK;
}

int dorac_atomic_file_write(dorac_atomic_file *f, const void *data, size_t n) {
    if (!f) return dorac_error(DORAC_E_INVALID, "dorac_atomic_file_write: file is NULL");
    if (f->status != DORAC_OK) return f->status;
    if (n == 0) return DORAC_OK;
    if (!data) return f->status = dorac_error(DORAC_E_INVALID, "%s: write of %zu bytes from NULL", f->final_path, n);
    int rc = write_all(f->fd, data, n, f->final_path);
    if (rc != DORAC_OK) f->status = rc;
    return rc;
}

void dorac_atomic_file_abort(dorac_atomic_file *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    unlink(f->tmp_path);
    free_file(f);
}

int dorac_atomic_file_commit(dorac_atomic_file *f) {
    if (!f) return dorac_error(DORAC_E_INVALID, "dorac_atomic_file_commit: file is NULL");
    int rc = f->status;
    if (rc == DORAC_OK && fsync(f->fd) != 0)
        rc = dorac_error(DORAC_E_IO, "%s: fsync failed: %s", f->final_path, strerror(errno));
    if (close(f->fd) != 0 && rc == DORAC_OK)
        rc = dorac_error(DORAC_E_IO, "%s: close failed: %s", f->final_path, strerror(errno));
    f->fd = -1;
    if (rc == DORAC_OK && rename(f->tmp_path, f->final_path) != 0)
        rc = dorac_error(DORAC_E_IO, "%s: rename from %s failed: %s", f->final_path, f->tmp_path,
                         strerror(errno));
    if (rc != DORAC_OK) {
        dorac_atomic_file_abort(f);
        return rc;
    }
    char *dir = NULL;
    const char *base = NULL;
    rc = split_path(f->final_path, &dir, &base);
    if (rc == DORAC_OK) rc = fsync_dir(dir);
    free(dir);
    free_file(f);
    return rc;
}

int dorac_atomic_write(const char *path, const void *data, size_t n) {
    dorac_atomic_file *f;
    DORAC_TRY(dorac_atomic_file_open(&f, path));
    int rc = dorac_atomic_file_write(f, data, n);
    if (rc != DORAC_OK) {
        dorac_atomic_file_abort(f);
        return rc;
    }
    return dorac_atomic_file_commit(f);
}

int dorac_atomic_copy_file(const char *src, const char *dst) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return dorac_error(DORAC_E_IO, "%s: %s", src, strerror(errno));
    struct stat st;
    if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(in);
        return dorac_error(DORAC_E_IO, "%s: not a regular file", src);
    }
    dorac_atomic_file *f;
    int rc = dorac_atomic_file_open(&f, dst);
    if (rc != DORAC_OK) {
        close(in);
        return rc;
    }
    char buf[1 << 16];
    for (;;) {
        ssize_t got = read(in, buf, sizeof buf);
        if (got < 0) {
            if (errno == EINTR) continue;
            rc = dorac_error(DORAC_E_IO, "%s: read failed: %s", src, strerror(errno));
            break;
        }
        if (got == 0) break;
        rc = dorac_atomic_file_write(f, buf, (size_t)got);
        if (rc != DORAC_OK) break;
    }
    close(in);
    if (rc != DORAC_OK) {
        dorac_atomic_file_abort(f);
        return rc;
    }
    return dorac_atomic_file_commit(f);
}

int dorac_mkdir_p(const char *path) {
    if (!path || !path[0]) return dorac_error(DORAC_E_INVALID, "dorac_mkdir_p: empty path");
    char *p = strdup(path);
    if (!p) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", path);
    int rc = DORAC_OK;
    /* Create each prefix that ends just before a '/', then the whole path. */
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            rc = dorac_error(DORAC_E_IO, "%s: cannot create folder %s: %s", path, p, strerror(errno));
            break;
        }
        *s = saved;
        if (saved == '\0') break;
    }
    if (rc == DORAC_OK && !dorac_is_dir(path))
        rc = dorac_error(DORAC_E_IO, "%s: exists and is not a folder", path);
    free(p);
    return rc;
}

/* Copies final_dir without trailing slashes into a malloc'd string. */
static int strip_slashes(char **out, const char *path) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    char *p = malloc(len + 1);
    if (!p) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", path);
    memcpy(p, path, len);
    p[len] = '\0';
    *out = p;
    return DORAC_OK;
}

int dorac_atomic_dir_begin(char *tmp_out, size_t cap, const char *final_dir) {
    if (!tmp_out || cap == 0 || !final_dir || !final_dir[0])
        return dorac_error(DORAC_E_INVALID, "dorac_atomic_dir_begin: bad arguments");
    tmp_out[0] = '\0';
    char *final = NULL, *dir = NULL, *tmp = NULL;
    const char *base = NULL;
    int rc = strip_slashes(&final, final_dir);
    if (rc == DORAC_OK) rc = split_path(final, &dir, &base);
    if (rc == DORAC_OK && (strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || base[0] == '\0' ||
                           strcmp(final, "/") == 0))
        rc = dorac_error(DORAC_E_INVALID, "%s: not a folder name that can be replaced", final_dir);
    if (rc == DORAC_OK) rc = dorac_mkdir_p(dir);
    if (rc == DORAC_OK) rc = sibling_name(&tmp, dir, base, "tmp");
    if (rc == DORAC_OK && strlen(tmp) + 1 > cap)
        rc = dorac_error(DORAC_E_INVALID, "%s: temp folder name needs %zu bytes, buffer has %zu", final_dir,
                         strlen(tmp) + 1, cap);
    if (rc == DORAC_OK && mkdir(tmp, 0777) != 0)
        rc = dorac_error(DORAC_E_IO, "%s: cannot create temp folder %s: %s", final_dir, tmp, strerror(errno));
    if (rc == DORAC_OK) memcpy(tmp_out, tmp, strlen(tmp) + 1);
    free(tmp);
    free(dir);
    free(final);
    return rc;
}

/* fsyncs every regular file and folder below (and including) the folder
** open as dir_fd. Takes ownership of dir_fd. */
static int fsync_tree_fd(int dir_fd, const char *path, int depth) {
    if (depth > TREE_MAX_DEPTH) {
        close(dir_fd);
        return dorac_error(DORAC_E_INVALID, "%s: folders nested deeper than %d", path, TREE_MAX_DEPTH);
    }
    DIR *d = fdopendir(dir_fd);
    if (!d) {
        int e = errno;
        close(dir_fd);
        return dorac_error(DORAC_E_IO, "%s: cannot list: %s", path, strerror(e));
    }
    int rc = DORAC_OK;
    struct dirent *e = NULL;
    while (rc == DORAC_OK && (errno = 0, e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = dorac_error(DORAC_E_IO, "%s/%s: %s", path, e->d_name, strerror(errno));
            break;
        }
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) continue;
        int flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0);
        int fd = openat(dirfd(d), e->d_name, flags);
        if (fd < 0) {
            rc = dorac_error(DORAC_E_IO, "%s/%s: cannot open to fsync: %s", path, e->d_name, strerror(errno));
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            rc = fsync_tree_fd(fd, e->d_name, depth + 1);
        } else {
            if (fsync(fd) != 0)
                rc = dorac_error(DORAC_E_IO, "%s/%s: fsync failed: %s", path, e->d_name, strerror(errno));
            close(fd);
        }
    }
    if (rc == DORAC_OK && errno != 0 && !e)
        rc = dorac_error(DORAC_E_IO, "%s: cannot list: %s", path, strerror(errno));
    if (rc == DORAC_OK && fsync(dirfd(d)) != 0 && errno != EINVAL && errno != ENOTSUP)
        rc = dorac_error(DORAC_E_IO, "%s: fsync of folder failed: %s", path, strerror(errno));
    closedir(d);
    return rc;
}

/* Removes the entry name under parent_fd and, if it is a folder, everything
** below it. Symlinks are removed, never followed. */
static int remove_tree_at(int parent_fd, const char *name, int depth) {
    if (depth > TREE_MAX_DEPTH)
        return dorac_error(DORAC_E_INVALID, "%s: folders nested deeper than %d", name, TREE_MAX_DEPTH);
    int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return DORAC_OK;
        if (errno == ENOTDIR || errno == ELOOP) {
            if (unlinkat(parent_fd, name, 0) != 0 && errno != ENOENT)
                return dorac_error(DORAC_E_IO, "%s: cannot remove: %s", name, strerror(errno));
            return DORAC_OK;
        }
        return dorac_error(DORAC_E_IO, "%s: cannot open: %s", name, strerror(errno));
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return dorac_error(DORAC_E_IO, "%s: cannot list: %s", name, strerror(e));
    }
    int rc = DORAC_OK;
    /* Entries are removed while listing; repeat passes until one finds
    ** nothing, since readdir need not report every entry after a removal. */
    for (bool removed = true; removed && rc == DORAC_OK;) {
        removed = false;
        rewinddir(d);
        struct dirent *e;
        while (rc == DORAC_OK && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            rc = remove_tree_at(dirfd(d), e->d_name, depth + 1);
            removed = true;
        }
    }
    closedir(d);
    if (rc == DORAC_OK && unlinkat(parent_fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        rc = dorac_error(DORAC_E_IO, "%s: cannot remove folder: %s", name, strerror(errno));
    return rc;
}

/* True when the last component of path looks like ".<name>.tmp-..." or
** ".<name>.old-...", the only names this file ever removes recursively. */
static bool is_temp_name(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    return base[0] == '.' && (strstr(base, ".tmp-") != NULL || strstr(base, ".old-") != NULL) &&
           strcmp(base, ".") != 0 && strcmp(base, "..") != 0;
}

int dorac_atomic_dir_abort(const char *tmp) {
    if (!tmp || !tmp[0]) return dorac_error(DORAC_E_INVALID, "dorac_atomic_dir_abort: empty path");
    char *p = NULL;
    DORAC_TRY(strip_slashes(&p, tmp));
    int rc = is_temp_name(p) ? remove_tree_at(AT_FDCWD, p, 0)
                             : dorac_error(DORAC_E_INVALID, "%s: not a temp folder made by dorac_atomic_dir_begin", tmp);
    free(p);
    return rc;
}

/* Renames tmp over an existing folder final, keeping the old copy until the
** new one is in place, and removes the old copy at the end. */
static int replace_existing(const char *tmp, const char *final, const char *dir, const char *base) {
#if defined(RENAME_EXCHANGE)
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE) == 0) {
        /* tmp now holds the old copy. */
        int rc = fsync_dir(dir);
        if (rc != DORAC_OK) return rc;
        remove_tree_at(AT_FDCWD, tmp, 0);
        return DORAC_OK;
    }
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return dorac_error(DORAC_E_IO, "%s: cannot swap in %s: %s", final, tmp, strerror(errno));
#endif
    char *old = NULL;
    DORAC_TRY(sibling_name(&old, dir, base, "old"));
    if (rename(final, old) != 0) {
        int rc = dorac_error(DORAC_E_IO, "%s: cannot move the old copy aside: %s", final, strerror(errno));
        free(old);
        return rc;
    }
    if (rename(tmp, final) != 0) {
        int rc = dorac_error(DORAC_E_IO, "%s: rename from %s failed: %s", final, tmp, strerror(errno));
        rename(old, final); /* put the last good copy back */
        free(old);
        return rc;
    }
    int rc = fsync_dir(dir);
    if (rc == DORAC_OK) remove_tree_at(AT_FDCWD, old, 0);
    free(old);
    return rc;
}

int dorac_atomic_dir_commit(const char *tmp, const char *final_dir) {
    if (!tmp || !tmp[0] || !final_dir || !final_dir[0])
        return dorac_error(DORAC_E_INVALID, "dorac_atomic_dir_commit: empty path");
    char *final = NULL, *dir = NULL;
    const char *base = NULL;
    int rc = strip_slashes(&final, final_dir);
    if (rc == DORAC_OK) rc = split_path(final, &dir, &base);
    if (rc == DORAC_OK) {
        int fd = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        rc = fd < 0 ? dorac_error(DORAC_E_IO, "%s: cannot open temp folder: %s", tmp, strerror(errno))
                    : fsync_tree_fd(fd, tmp, 0);
    }
    if (rc == DORAC_OK) {
        struct stat st;
        if (lstat(final, &st) == 0) {
            if (!S_ISDIR(st.st_mode))
                rc = dorac_error(DORAC_E_INVALID, "%s: exists and is not a folder; not replacing it", final);
            else
                rc = replace_existing(tmp, final, dir, base);
        } else if (errno != ENOENT) {
            rc = dorac_error(DORAC_E_IO, "%s: %s", final, strerror(errno));
        } else if (rename(tmp, final) != 0) {
            rc = dorac_error(DORAC_E_IO, "%s: rename from %s failed: %s", final, tmp, strerror(errno));
        } else {
            rc = fsync_dir(dir);
        }
    }
    free(dir);
    free(final);
    return rc;
}
