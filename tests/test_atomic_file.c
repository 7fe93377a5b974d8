/*
** test_atomic_file.c — atomic file and folder writes: content arrives whole,
** nothing appears under the final name before commit, failures leave
** nothing behind, and replacing a folder never loses the last good copy.
*/
#define _POSIX_C_SOURCE 200809L

#include "test.h"
#include "io/atomic_file.h"
#include "io_test_util.h"

static char *scratch;

static bool file_is(const char *path, const char *want) {
    size_t n;
    unsigned char *p = read_bytes(path, &n);
    bool eq = p && n == strlen(want) && memcmp(p, want, n) == 0;
    free(p);
    return eq;
}

static void test_files(void) {
    char *path = join(scratch, "a.txt");
    CHECK_OK(dorac_atomic_write(path, "hello", 5));
    CHECK(file_is(path, "hello"));
    CHECK_OK(dorac_atomic_write(path, "replaced", 8));
    CHECK(file_is(path, "replaced"));
    CHECK_OK(dorac_atomic_write(path, NULL, 0));
    CHECK(file_is(path, ""));

    /* streaming: nothing under the final name until commit */
    dorac_atomic_file *f;
    CHECK_OK(dorac_atomic_write(path, "old", 3));
    CHECK_OK(dorac_atomic_file_open(&f, path));
    CHECK(count_entries_containing(scratch, ".a.txt.tmp-") == 1);
    CHECK_OK(dorac_atomic_file_write(f, "new ", 4));
    CHECK_OK(dorac_atomic_file_write(f, "content", 7));
    CHECK(file_is(path, "old"));
    CHECK_OK(dorac_atomic_file_commit(f));
    CHECK(file_is(path, "new content"));

    /* abort: the old file stays, the temp file goes */
    CHECK_OK(dorac_atomic_file_open(&f, path));
    CHECK_OK(dorac_atomic_file_write(f, "junk", 4));
    dorac_atomic_file_abort(f);
    dorac_atomic_file_abort(NULL);
    CHECK(file_is(path, "new content"));

    /* a failed write is remembered: the commit fails and nothing changes */
    CHECK_OK(dorac_atomic_file_open(&f, path));
    CHECK_STATUS(dorac_atomic_file_write(f, NULL, 5), DORAC_E_INVALID);
    CHECK_STATUS(dorac_atomic_file_write(f, "x", 1), DORAC_E_INVALID);
    CHECK_STATUS(dorac_atomic_file_commit(f), DORAC_E_INVALID);
    CHECK(file_is(path, "new content"));
    CHECK(count_entries_containing(scratch, ".tmp-") == 0);

    /* a folder that does not exist */
    char *bad = join(scratch, "missing/b.txt");
    CHECK_STATUS(dorac_atomic_write(bad, "x", 1), DORAC_E_IO);
    CHECK_MESSAGE("missing/b.txt");
    CHECK_STATUS(dorac_atomic_file_open(&f, bad), DORAC_E_IO);
    CHECK(f == NULL);
    CHECK_STATUS(dorac_atomic_write("", "x", 1), DORAC_E_INVALID);
    CHECK_STATUS(dorac_atomic_write(scratch, "x", 1), DORAC_E_IO); /* a folder is not replaced by a file */

    /* copy */
    char *copy = join(scratch, "copy.txt");
    CHECK_OK(dorac_atomic_copy_file(path, copy));
    CHECK(files_equal(path, copy));
    CHECK_STATUS(dorac_atomic_copy_file(bad, copy), DORAC_E_IO);
    CHECK(files_equal(path, copy));
    CHECK(count_entries_containing(scratch, ".tmp-") == 0);
    free(copy);
    free(bad);
    free(path);
}

static void test_mkdir_p(void) {
    char *deep = join(scratch, "m/n/o/p");
    CHECK_OK(dorac_mkdir_p(deep));
    CHECK_OK(dorac_mkdir_p(deep)); /* exists already */
    struct stat st;
    CHECK(stat(deep, &st) == 0 && S_ISDIR(st.st_mode));
    char *file = join(deep, "f");
    CHECK(write_bytes(file, "x", 1));
    char *under_file = join(file, "sub");
    CHECK_STATUS(dorac_mkdir_p(file), DORAC_E_IO);
    CHECK_STATUS(dorac_mkdir_p(under_file), DORAC_E_IO);
    CHECK_MESSAGE("sub");
    free(under_file);
    free(file);
    free(deep);
}

static void fill_dir(const char *dir, const char *content) {
    char *a = join(dir, "config.json"), *sub = join(dir, "sub"), *b = join(dir, "sub/weights.bin");
    CHECK_OK(dorac_atomic_write(a, content, strlen(content)));
    CHECK_OK(dorac_mkdir_p(sub));
    CHECK(write_bytes(b, content, strlen(content))); /* a file not written atomically: commit fsyncs it */
    free(a);
    free(sub);
    free(b);
}

static void test_dirs(void) {
    char *parent = join(scratch, "out/models"); /* parent does not exist yet */
    char *final = join(parent, "merged");
    char tmp[4096];
    CHECK_OK(dorac_atomic_dir_begin(tmp, sizeof tmp, final));
    CHECK(strstr(tmp, "/.merged.tmp-") != NULL);
    fill_dir(tmp, "first");
    CHECK(access(final, F_OK) != 0); /* nothing under the final name yet */
    CHECK_OK(dorac_atomic_dir_commit(tmp, final));
    CHECK(access(tmp, F_OK) != 0);
    char *cfg = join(final, "config.json"), *w = join(final, "sub/weights.bin");
    CHECK(file_is(cfg, "first") && file_is(w, "first"));

    /* replace an existing folder: the new copy wins, no leftovers */
    char *extra = join(final, "stale.txt");
    CHECK(write_bytes(extra, "stale", 5));
    CHECK_OK(dorac_atomic_dir_begin(tmp, sizeof tmp, final));
    fill_dir(tmp, "second");
    CHECK(file_is(cfg, "first")); /* the old copy is intact until commit */
    CHECK_OK(dorac_atomic_dir_commit(tmp, final));
    CHECK(file_is(cfg, "second") && file_is(w, "second"));
    CHECK(access(extra, F_OK) != 0);
    CHECK(count_entries_containing(parent, ".tmp-") == 0);
    CHECK(count_entries_containing(parent, ".old-") == 0);
    CHECK(count_entries_containing(parent, "merged") == 1);

    /* abort removes the temp folder and everything in it */
    CHECK_OK(dorac_atomic_dir_begin(tmp, sizeof tmp, final));
    fill_dir(tmp, "third");
    CHECK_OK(dorac_atomic_dir_abort(tmp));
    CHECK(access(tmp, F_OK) != 0);
    CHECK(file_is(cfg, "second"));

    /* abort refuses a folder it did not make */
    CHECK_STATUS(dorac_atomic_dir_abort(final), DORAC_E_INVALID);
    CHECK_MESSAGE("merged");
    CHECK(file_is(cfg, "second"));

    /* trailing slashes on the final name are fine */
    char *slashed = join(parent, "merged/");
    CHECK_OK(dorac_atomic_dir_begin(tmp, sizeof tmp, slashed));
    fill_dir(tmp, "fourth");
    CHECK_OK(dorac_atomic_dir_commit(tmp, slashed));
    CHECK(file_is(cfg, "fourth"));
    free(slashed);

    /* a regular file in the way is not replaced */
    char *blocker = join(parent, "blocker");
    CHECK(write_bytes(blocker, "keep", 4));
    CHECK_OK(dorac_atomic_dir_begin(tmp, sizeof tmp, blocker));
    CHECK_STATUS(dorac_atomic_dir_commit(tmp, blocker), DORAC_E_INVALID);
    CHECK_MESSAGE("blocker");
    CHECK(file_is(blocker, "keep"));
    CHECK_OK(dorac_atomic_dir_abort(tmp));

    /* buffer too small, bad names */
    char small[8];
    CHECK_STATUS(dorac_atomic_dir_begin(small, sizeof small, final), DORAC_E_INVALID);
    CHECK(count_entries_containing(parent, ".tmp-") == 0);
    CHECK_STATUS(dorac_atomic_dir_begin(tmp, sizeof tmp, "/"), DORAC_E_INVALID);
    CHECK_STATUS(dorac_atomic_dir_commit("/no/such/.x.tmp-1-1", final), DORAC_E_IO);
    CHECK(file_is(cfg, "fourth"));

    free(blocker);
    free(extra);
    free(cfg);
    free(w);
    free(final);
    free(parent);
}

int main(void) {
    scratch = scratch_dir("atomic");
    test_files();
    test_mkdir_p();
    test_dirs();
    rm_tree(scratch);
    free(scratch);
    return test_report();
}
