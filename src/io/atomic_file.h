/*
** atomic_file.h — writes that never leave a torn file under a final name.
**
** A file is written to a temporary name in the same folder
** (".<name>.tmp-<pid>-<n>"), flushed with fsync, renamed over the final name,
** and the folder is fsynced so the rename itself survives a crash. Readers
** see either the old file or the complete new one, never a partial one.
**
** A folder (a merged model, a checkpoint) is built the same way: created as
** "<parent>/.<name>.tmp-<pid>-<n>/", filled, fsynced, then renamed into place.
** When the final folder already exists it is replaced without ever losing the
** last good copy: the old copy is removed only after the new one is in place.
**
** Temporary names left by a crash are not cleaned up automatically; they all
** start with '.' and contain ".tmp-", so they are easy to spot.
*/
#ifndef DORAC_IO_ATOMIC_FILE_H
#define DORAC_IO_ATOMIC_FILE_H

#include <stddef.h>

/* Writes n bytes to path atomically (temp file, write, fsync, rename, fsync
** the folder). The folder must exist. DORAC_E_IO names the path and the
** failing step; on failure the final name is untouched and no temp file is
** left behind. */
int dorac_atomic_write(const char *path, const void *data, size_t n);

/* A streaming atomic write: open, write any number of times, then commit or
** abort. Nothing appears under the final name before commit succeeds. */
typedef struct dorac_atomic_file dorac_atomic_file;

/* Creates the temp file for path. On failure *f is NULL. */
int dorac_atomic_file_open(dorac_atomic_file **f, const char *path);

/* Appends n bytes. A failure is remembered: every later write and the
** commit fail with the same status, so callers may check only the commit. */
int dorac_atomic_file_write(dorac_atomic_file *f, const void *data, size_t n);

/* fsyncs, renames the temp file to the final path and fsyncs the folder.
** Always frees f, whether it succeeds or not; on failure the temp file is
** removed and the final name is untouched. */
int dorac_atomic_file_commit(dorac_atomic_file *f);

/* Removes the temp file and frees f. f may be NULL. */
void dorac_atomic_file_abort(dorac_atomic_file *f);

/* Copies the regular file src to dst atomically (dst's folder must exist). */
int dorac_atomic_copy_file(const char *src, const char *dst);

/* Creates path and any missing parents (mode 0777 less the umask). An
** existing directory is not an error; an existing non-directory is
** DORAC_E_IO. */
int dorac_mkdir_p(const char *path);

/* Creates "<parent>/.<name>.tmp-<pid>-<n>" for final_dir (creating <parent>
** if needed) and stores its path, NUL-terminated, in tmp_out (cap bytes).
** DORAC_E_INVALID when cap is too small; DORAC_E_IO when mkdir fails. */
int dorac_atomic_dir_begin(char *tmp_out, size_t cap, const char *final_dir);

/* fsyncs every file and folder under tmp, then puts tmp in place as
** final_dir. If final_dir exists (it must be a directory) the two are swapped
** atomically where the kernel supports it (renameat2 RENAME_EXCHANGE), and
** otherwise final_dir is first renamed aside; either way the old copy is
** deleted only after the new one is in place, and if the last rename fails
** the old copy is put back. On success tmp no longer exists. If deleting the
** old copy fails after a successful commit, the commit still reports
** DORAC_OK and a ".<name>.old-*" folder may remain. */
int dorac_atomic_dir_commit(const char *tmp, const char *final_dir);

/* Removes tmp and everything under it, never following symlinks. Refuses
** (DORAC_E_INVALID) a path whose last component is not a temp name made by
** dorac_atomic_dir_begin (".<name>.tmp-..."), so a mistaken argument cannot
** delete a user's folder. */
int dorac_atomic_dir_abort(const char *tmp);

#endif
