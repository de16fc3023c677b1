// Files for the data-set tests: one temporary folder per test process (under $TMPDIR or
// /tmp), files written into it plain or gzip-compressed, and its removal at exit.
#ifndef TMIX_TEST_DATA_FIXTURES_H
#define TMIX_TEST_DATA_FIXTURES_H

#include <stdbool.h>
#include <stddef.h>

#include "dataset.h"
#include "harness.h"

// The process's temporary folder, made on first use (NULL when it cannot be made).
const char *fixture_dir(void);

// fixture_dir()/rel in one of 8 rotating static buffers (so a few may be held at once).
const char *fixture_path(const char *rel);

// Makes fixture_dir()/rel and the folders above it inside the fixture folder. 0 on success.
int fixture_mkdir(const char *rel);

// Writes n bytes to fixture_dir()/rel (gzip-compressed with fixture_write_gz), making the
// folders above it. 0 on success.
int fixture_write(const char *rel, const void *data, size_t n);
int fixture_write_gz(const char *rel, const void *data, size_t n);

// Cuts fixture_dir()/rel to n bytes. 0 on success.
int fixture_truncate(const char *rel, size_t n);

// Reads sample i of ds, an h x w image, whole at DCT scale 1/scale (1, 2, 4 or 8): with
// hints that only that scale meets (sides above 4 pixels), checking the size it got.
int fixture_read_scaled(const tmixd_dataset *ds, int64_t i, int h, int w, int scale,
                        tmixd_image *img);

// Removes the fixture folder and everything in it.
void fixture_cleanup(void);

// test_main(argc, argv, tests), then fixture_cleanup(): the main of a data-set test program.
int fixture_test_main(int argc, char **argv, const test_case *tests);

// Whether the calling thread's last tmix error message contains text (printed when not).
bool error_mentions(const char *text);

#endif
