// Progress file, e.g.
// {"version": 1, "groups": [{"name": "g", "batch_size": 128, "dtype": 1, "layout": 1,
//   "node_rank": 0, "node_count": 1, "batches_per_epoch": 469, "done_through": 470,
//   "done": [472, 473]}]}
// (files without node_rank and node_count, from before nodes, mean 0 and 1).
#include "progress.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "fault.h"
#include "log.h"

enum { PROGRESS_VERSION = 1, MAX_DONE = 4096 };

static int write_all(int fd, const char *text, size_t n)
{
    while (n > 0) {
        const ssize_t w = write(fd, text, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        text += w;
        n -= (size_t)w;
    }
    return 0;
}

int tmixd_progress_write(const char *path, const char *text)
{
    char tmp[4096], dir[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(dir, sizeof dir, "%s", path);
    const int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return tmix_fail(TMIX_EIO, "%s: %s", tmp, strerror(errno));
    if (write_all(fd, text, strlen(text)) < 0 || fsync(fd) < 0) {
        const int e = errno;
        close(fd);
        unlink(tmp);
        return tmix_fail(TMIX_EIO, "%s: %s", tmp, strerror(e));
    }
    close(fd);
    // Fault injection for tests: a slow disk (serve.slow_save: TMIXD_FAULT_SLOW_SAVE_MS, a
    // write that takes that long), and a death between writing the new file and renaming it
    // over the old one (serve.kill_in_save), the moment a crash must not lose the old progress.
    tmixd_fault_delay("TMIXD_FAULT_SLOW_SAVE_MS");
    if (getenv("TMIXD_FAULT_KILL_IN_SAVE"))
        raise(SIGKILL);
    if (rename(tmp, path) < 0) {
        const int e = errno;
        unlink(tmp);
        return tmix_fail(TMIX_EIO, "%s: rename: %s", path, strerror(e));
    }
    const int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { // the rename itself must reach the disk
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

char *tmixd_progress_text(tmixd_group *const *groups, int ngroups)
{
    cJSON *root = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(root, "groups");
    uint64_t *done = malloc(MAX_DONE * sizeof *done);
    if (!root || !list || !done) {
        cJSON_Delete(root);
        free(done);
        tmix_fail(TMIX_ENOMEM, "progress: out of memory");
        return NULL;
    }
    cJSON_AddNumberToObject(root, "version", PROGRESS_VERSION);
    for (int i = 0; i < ngroups; i++) {
        const tmixd_group_params *p = tmixd_group_params_get(groups[i]);
        if (p->mode != TMIXD_SHARD)
            continue;
        uint64_t through;
        const int n = tmixd_group_progress(groups[i], &through, done, MAX_DONE);
        cJSON *g = cJSON_CreateObject();
        cJSON_AddItemToArray(list, g);
        cJSON_AddStringToObject(g, "name", tmixd_group_name(groups[i]));
        cJSON_AddNumberToObject(g, "batch_size", p->batch_size);
        cJSON_AddNumberToObject(g, "dtype", p->dtype);
        cJSON_AddNumberToObject(g, "layout", p->layout);
        cJSON_AddNumberToObject(g, "node_rank", p->node_rank);
        cJSON_AddNumberToObject(g, "node_count", p->node_count);
        cJSON_AddNumberToObject(g, "batches_per_epoch",
                                (double)tmixd_group_batches_per_epoch(groups[i]));
        cJSON_AddNumberToObject(g, "done_through", (double)through);
        cJSON *d = cJSON_AddArrayToObject(g, "done");
        for (int k = 0; k < n; k++)
            cJSON_AddItemToArray(d, cJSON_CreateNumber((double)done[k]));
    }
    free(done);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        tmix_fail(TMIX_ENOMEM, "progress: out of memory");
    return text;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *text = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        const long n = ftell(f);
        if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)n + 1))) {
            if (fread(text, 1, (size_t)n, f) != (size_t)n) {
                free(text);
                text = NULL;
            } else {
                text[n] = 0;
            }
        }
    }
    fclose(f);
    return text;
}

static double number(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

int tmixd_progress_load(const char *path, uint64_t dataset_size, int prefetch,
                        tmixd_group **groups, int *ngroups, int max_groups)
{
    char *text = read_text(path);
    if (!text) {
        if (errno == ENOENT)
            return 0;
        return tmix_fail(TMIX_EIO, "%s: %s", path, strerror(errno));
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "groups");
    if (!root || number(root, "version") != PROGRESS_VERSION || !cJSON_IsArray(list)) {
        cJSON_Delete(root);
        return tmix_fail(TMIX_EFORMAT, "%s: not a tmixd progress file (version %d); move it "
                         "away to start afresh", path, PROGRESS_VERSION);
    }
    const cJSON *g;
    int rc = 0;
    cJSON_ArrayForEach(g, list)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(g, "name");
        const cJSON *done = cJSON_GetObjectItemCaseSensitive(g, "done");
        const double bs = number(g, "batch_size"), through = number(g, "done_through");
        const cJSON *rank = cJSON_GetObjectItemCaseSensitive(g, "node_rank");
        const cJSON *count = cJSON_GetObjectItemCaseSensitive(g, "node_count");
        const tmixd_group_params p = {
            .mode = TMIXD_SHARD,
            .batch_size = (uint32_t)bs,
            .dtype = (int)number(g, "dtype"),
            .layout = (int)number(g, "layout"),
            .node_rank = cJSON_IsNumber(rank) ? (uint32_t)rank->valuedouble : 0,
            .node_count = cJSON_IsNumber(count) ? (uint32_t)count->valuedouble : 1,
        };
        if (!cJSON_IsString(name) || !cJSON_IsArray(done) || bs < 1 || through < 0 ||
            p.dtype < 1 || p.layout < 1 || p.node_count < 1 || p.node_rank >= p.node_count ||
            p.node_count > dataset_size) {
            rc = tmix_fail(TMIX_EFORMAT, "%s: a group entry is malformed", path);
            break;
        }
        if (*ngroups == max_groups) {
            rc = tmix_fail(TMIX_EFORMAT, "%s: more than %d groups", path, max_groups);
            break;
        }
        const int n = cJSON_GetArraySize(done);
        uint64_t *d = malloc(((size_t)n + 1) * sizeof *d);
        tmixd_group *grp = tmixd_group_new(name->valuestring, &p, dataset_size, prefetch);
        if (!d || !grp) {
            free(d);
            tmixd_group_free(grp);
            rc = tmix_fail(TMIX_ENOMEM, "%s: group %s", path, name->valuestring);
            break;
        }
        const uint64_t bpe = tmixd_group_batches_per_epoch(grp);
        if ((uint64_t)number(g, "batches_per_epoch") != bpe) {
            tmixd_log(TMIXD_LOG_WARN, "%s: group %s was saved for another data set size; it "
                      "starts afresh", path, name->valuestring);
            free(d);
            tmixd_group_free(grp);
            continue;
        }
        for (int k = 0; k < n; k++) {
            const cJSON *v = cJSON_GetArrayItem(done, k);
            d[k] = cJSON_IsNumber(v) && v->valuedouble >= 0 ? (uint64_t)v->valuedouble : 0;
        }
        rc = tmixd_group_restore(grp, (uint64_t)through, d, n);
        free(d);
        if (rc < 0) {
            tmixd_group_free(grp);
            break;
        }
        groups[(*ngroups)++] = grp;
        tmixd_log(TMIXD_LOG_INFO, "group %s resumes at epoch %llu batch %llu", name->valuestring,
                  (unsigned long long)((uint64_t)through / bpe),
                  (unsigned long long)((uint64_t)through % bpe));
    }
    cJSON_Delete(root);
    return rc;
}
