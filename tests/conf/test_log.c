// The log: line format, level filtering (before formatting), one line per record, reopen
// after logrotate's rename, and a file that cannot be opened.
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf_test_util.h"
#include "log.h"

// The number of lines of text.
static int count_lines(const char *text)
{
    int n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

// "YYYY-MM-DDTHH:MM:SS" of the UTC time t.
static void utc_stamp(time_t t, char *buf, size_t n)
{
    struct tm utc;
    gmtime_r(&t, &utc);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &utc);
}

static int test_line_format(void)
{
    const char *path = scratch_path("format.log");
    CHECK_OK(tmixd_log_open(path));
    // The logger's clock: time() reads a coarser one, a tick behind at a second's turn.
    struct timespec before, after;
    clock_gettime(CLOCK_REALTIME, &before);
    tmixd_log(TMIXD_LOG_INFO, "hello %d from %s", 42, "test");
    clock_gettime(CLOCK_REALTIME, &after);
    char *text = read_text(path);
    CHECK(text != NULL);
    printf("%s", text);
    CHECK(count_lines(text) == 1);

    // 2026-11-30T20:50:01.123Z tmixd[PID] info: message
    char stamp[32], level[16], message[64];
    int millis, n = 0;
    long pid;
    CHECK(sscanf(text, "%19[0-9T:-].%3dZ tmixd[%ld] %15[a-z]: %63[^\n]%n", stamp, &millis, &pid,
                 level, message, &n) == 5);
    CHECK((size_t)n + 1 == strlen(text) && text[n] == '\n');
    CHECK(text[19] == '.' && text[23] == 'Z' && millis >= 0 && millis <= 999);
    char at_before[32], at_after[32];
    utc_stamp(before.tv_sec, at_before, sizeof at_before);
    utc_stamp(after.tv_sec, at_after, sizeof at_after);
    CHECK(strcmp(stamp, at_before) >= 0 && strcmp(stamp, at_after) <= 0);
    CHECK(pid == (long)getpid());
    CHECK(strcmp(level, "info") == 0);
    CHECK(strcmp(message, "hello 42 from test") == 0);
    free(text);
    CHECK_OK(tmixd_log_open(NULL));
    return 0;
}

static int side_effects;

static int counted(void)
{
    return ++side_effects;
}

static int test_levels(void)
{
    const char *path = scratch_path("levels.log");
    CHECK_OK(tmixd_log_open(path));
    CHECK(tmixd_log_threshold == TMIXD_LOG_INFO); // the level at start
    tmixd_log_set_level(TMIXD_LOG_WARN);
    tmixd_log(TMIXD_LOG_DEBUG, "debug %d", counted());
    tmixd_log(TMIXD_LOG_INFO, "info %d", counted());
    tmixd_log(TMIXD_LOG_WARN, "warn %d", counted());
    tmixd_log(TMIXD_LOG_ERROR, "error %d", counted());
    // Dropped lines do not even evaluate their arguments.
    CHECK(side_effects == 2);
    tmixd_log_set_level(TMIXD_LOG_DEBUG);
    tmixd_log(TMIXD_LOG_DEBUG, "debug again");
    char *text = read_text(path);
    CHECK(text != NULL);
    printf("%s", text);
    CHECK(count_lines(text) == 3);
    CHECK(strstr(text, "] warn: warn 1\n") != NULL);
    CHECK(strstr(text, "] error: error 2\n") != NULL);
    CHECK(strstr(text, "] debug: debug again\n") != NULL);
    CHECK(strstr(text, "info") == NULL);
    free(text);
    CHECK(strcmp(tmixd_log_level_name(TMIXD_LOG_DEBUG), "debug") == 0);
    CHECK(strcmp(tmixd_log_level_name(TMIXD_LOG_ERROR), "error") == 0);
    CHECK(strcmp(tmixd_log_level_name((tmixd_log_level)7), "?") == 0);
    CHECK_OK(tmixd_log_open(NULL));
    return 0;
}

// Newlines in a message and messages longer than the line buffer still make one line.
static int test_one_line_per_record(void)
{
    const char *path = scratch_path("lines.log");
    CHECK_OK(tmixd_log_open(path));
    tmixd_log(TMIXD_LOG_ERROR, "first\nsecond\r\nthird");
    char big[5001];
    memset(big, 'b', 5000);
    big[5000] = '\0';
    tmixd_log(TMIXD_LOG_WARN, "[%s]", big);
    char *text = read_text(path);
    CHECK(text != NULL);
    CHECK(count_lines(text) == 2);
    CHECK(strstr(text, "] error: first second  third\n") != NULL);
    const char *open = strstr(text, "] warn: [");
    CHECK(open != NULL);
    CHECK(strspn(open + 9, "b") == 5000 && strcmp(open + 9 + 5000, "]\n") == 0);
    free(text);
    CHECK_OK(tmixd_log_open(NULL));
    return 0;
}

// logrotate renames the file, then tmixd reopens it on SIGHUP: lines before the reopen go
// to the renamed file, lines after to a new file at the old name.
static int test_reopen_after_rename(void)
{
    char path[600], rotated[600];
    snprintf(path, sizeof path, "%s", scratch_path("tmixd.log"));
    snprintf(rotated, sizeof rotated, "%s", scratch_path("tmixd.log.1"));
    CHECK(write_text(path, "kept\n") == 0); // opened for append: old lines stay
    CHECK_OK(tmixd_log_open(path));
    tmixd_log(TMIXD_LOG_INFO, "one");
    CHECK(rename(path, rotated) == 0);
    tmixd_log(TMIXD_LOG_INFO, "two");
    CHECK_OK(tmixd_log_reopen());
    tmixd_log(TMIXD_LOG_INFO, "three");
    char *old = read_text(rotated), *now = read_text(path);
    CHECK(old != NULL && now != NULL);
    CHECK(count_lines(old) == 3 && strncmp(old, "kept\n", 5) == 0);
    CHECK(strstr(old, "] info: one\n") != NULL && strstr(old, "] info: two\n") != NULL);
    CHECK(count_lines(now) == 1 && strstr(now, "] info: three\n") != NULL);
    free(old);
    free(now);
    // Reopening stderr does nothing and succeeds.
    CHECK_OK(tmixd_log_open(""));
    CHECK_OK(tmixd_log_reopen());
    return 0;
}

// A log file that cannot be opened is an error naming it, and the log stays where it was.
static int test_open_error(void)
{
    char good[600];
    snprintf(good, sizeof good, "%s", scratch_path("good.log"));
    CHECK_OK(tmixd_log_open(good));
    char bad[600], want[700];
    snprintf(bad, sizeof bad, "%s/no/such/dir/tmixd.log", scratch_dir());
    snprintf(want, sizeof want, "log file %s: No such file or directory", bad);
    CHECK_MSG(tmixd_log_open(bad), TMIX_EIO, want);
    tmixd_log(TMIXD_LOG_ERROR, "still here");
    char *text = read_text(good);
    CHECK(text != NULL && strstr(text, "] error: still here\n") != NULL);
    free(text);
    // A failed reopen (a directory now stands at the path) keeps the old file too.
    CHECK(rename(good, scratch_path("moved.log")) == 0);
    CHECK(mkdir(scratch_path("good.log"), 0700) == 0);
    snprintf(want, sizeof want, "log file %s: Is a directory", scratch_path("good.log"));
    CHECK_MSG(tmixd_log_reopen(), TMIX_EIO, want);
    tmixd_log(TMIXD_LOG_ERROR, "after the failed reopen");
    text = read_text(scratch_path("moved.log"));
    CHECK(text != NULL && count_lines(text) == 2);
    CHECK(strstr(text, "] error: after the failed reopen\n") != NULL);
    free(text);
    CHECK_OK(tmixd_log_open(NULL));
    return 0;
}

int main(int argc, char **argv)
{
    static const test_case tests[] = {
        {"log.line_format", test_line_format},
        {"log.levels", test_levels},
        {"log.one_line_per_record", test_one_line_per_record},
        {"log.reopen_after_rename", test_reopen_after_rename},
        {"log.open_error", test_open_error},
        {NULL, NULL},
    };
    return test_main(argc, argv, tests);
}
