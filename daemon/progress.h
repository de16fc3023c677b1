// The progress file: for every shard group, its settings and which batches of its stream are
// acknowledged, as JSON, written atomically (temporary file, fsync, rename, fsync of the
// directory) so that a daemon killed at any moment finds the old file or the new one.
#ifndef TMIXD_PROGRESS_H
#define TMIXD_PROGRESS_H

#include <stdint.h>

#include "group.h"

// The file's text for these groups (malloc'd), or NULL with tmix_last_error().
char *tmixd_progress_text(tmixd_group *const *groups, int ngroups);
// Writes text as the file at path; from any thread (the groups are not read).
int tmixd_progress_write(const char *path, const char *text);
// Recreates the saved shard groups (none when the file does not exist). A file saved for a
// data set of another size is set aside with a warning: its positions mean other samples.
int tmixd_progress_load(const char *path, uint64_t dataset_size, int prefetch,
                        tmixd_group **groups, int *ngroups, int max_groups);

#endif
