/*
** io_test_util.h — helpers for the io/ tests: a scratch folder, whole-file
** reads and writes, a recursive remove, and reading expected values from the
** JSON fixtures that tools/ref/make_io_fixtures.py writes.
*/
#ifndef DORAC_IO_TEST_UTIL_H
#define DORAC_IO_TEST_UTIL_H

#include <dirent.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IO_FIXTURES "tests/fixtures/io"

/* A fresh folder under $TMPDIR (or /tmp); aborts the test program if it
** cannot be made, since nothing else could run. */
static inline char *scratch_dir(const char *tag) {
    const char *base = getenv("TMPDIR");
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/dorac-%s-XXXXXX", base && base[0] ? base : "/tmp", tag);
    if (!p || !mkdtemp(p)) {
        perror("mkdtemp");
        exit(2);
    }
    return p;
}

static inline char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static inline void rm_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char *c = join(path, e->d_name);
            rm_tree(c);
            free(c);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static inline bool write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* Whole file, malloc'd, NUL-terminated; NULL if unreadable. */
static inline unsigned char *read_bytes(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)len + 1);
    if (p && fread(p, 1, (size_t)len, f) != (size_t)len) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) p[len] = 0;
    *n = (size_t)len;
    return p;
}

static inline bool files_equal(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    unsigned char *pa = read_bytes(a, &na), *pb = read_bytes(b, &nb);
    bool eq = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return eq;
}

static inline json_t *load_json(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j) {
        fprintf(stderr, "%s:%d: %s (run tools/ref/make_io_fixtures.py?)\n", path, e.line, e.text);
        exit(2);
    }
    return j;
}

/* Number of entries of folder dir whose name contains needle. */
static inline int count_entries_containing(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (strstr(e->d_name, needle)) n++;
    if (d) closedir(d);
    return n;
}

static inline int mentions(const char *needle) { return strstr(dorac_last_error(), needle) != NULL; }

/* Checks that the last message is one line naming every needle given. */
#define CHECK_MESSAGE(...)                                                                   \
    do {                                                                                     \
        const char *needles_[] = {__VA_ARGS__};                                              \
        for (size_t i_ = 0; i_ < sizeof needles_ / sizeof needles_[0]; i_++) {               \
            test_checks++;                                                                   \
            if (!mentions(needles_[i_])) {                                                   \
                test_failures++;                                                             \
                fprintf(stderr, "%s:%d: message \"%s\" does not mention \"%s\"\n", __FILE__, \
                        __LINE__, dorac_last_error(), needles_[i_]);                         \
            }                                                                                \
        }                                                                                    \
        CHECK(strchr(dorac_last_error(), '\n') == NULL);                                     \
    } while (0)

#endif
