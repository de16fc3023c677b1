// tmixctl as a real process against the fake daemon: pull --print-ids prints exactly the
// ids, pull --out writes a safetensors file with what was received, status prints the
// table, bench prints its row, and a daemon's refusal is one line on stderr with exit 1.
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client_harness.h"
#include "fake_daemon.h"

extern char **environ;

// What a tmixctl run left: exit status, stdout and stderr (NUL-terminated, malloc'd).
typedef struct {
    int status;
    char *out, *err;
} run_result;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        if (len)
            *len = (size_t)n;
    }
    return buf;
}

// Runs $TMIXCTL with args (NULL-ended), its output in files of dir. -1 if it could not run.
static int run_tmixctl(const char *dir, const char *const *args, run_result *r)
{
    const char *exe = getenv("TMIXCTL");
    if (!exe) {
        fprintf(stderr, "TMIXCTL is not set\n");
        return -1;
    }
    char out[160], err[160];
    snprintf(out, sizeof(out), "%s/stdout", dir);
    snprintf(err, sizeof(err), "%s/stderr", dir);
    char *argv[32] = {(char *)exe};
    for (int i = 0; args[i] && i < 30; i++)
        argv[i + 1] = (char *)args[i];
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    int rc = posix_spawn(&pid, exe, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0 || waitpid(pid, &r->status, 0) != pid) {
        fprintf(stderr, "cannot run %s\n", exe);
        return -1;
    }
    r->status = WIFEXITED(r->status) ? WEXITSTATUS(r->status) : 128;
    r->out = slurp(out, NULL);
    r->err = slurp(err, NULL);
    unlink(out);
    unlink(err);
    return r->out && r->err ? 0 : -1;
}

static void run_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

// Batch index k of epoch 0 holds samples 4k .. 4k + 3 (the last batch of the 10: two).
static void epoch_of_ten(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    if (req->body_case == TMIX__ENVELOPE__BODY_HELLO) {
        reply_welcome(f, r, 100 + i);
        return;
    }
    const uint64_t index = (req->next->sequence - 1) % FAKE_BATCHES;
    reply_batch(f, r, req->next->sequence, 0, index, index == 2 ? 2 : FAKE_BATCH);
}

static int pull_print_ids(void)
{
    fake_daemon f = {.mode = TMIX__GROUP_MODE__BROADCAST,
                     .dtype = TMIX__DTYPE__UINT8,
                     .layout = TMIX__LAYOUT__NHWC};
    CHECK(fake_start(&f, epoch_of_ten, 4) == 0);
    run_result r;
    const char *args[] = {"pull",      "-e",        f.url,       "--group", "g",
                          "--mode",    "broadcast", "--batches", "3",       "--batch-size=4",
                          "--dtype",   "uint8",     "--layout",  "nhwc",    "--print-ids",
                          "--timeout", "2",         NULL};
    CHECK(run_tmixctl(f.dir, args, &r) == 0);
    CHECK(fake_stop(&f) == 0);
    printf("%s%s", r.out, r.err);
    CHECK(r.status == 0);
    CHECK(strcmp(r.out, "epoch 0 batch 0 ids 0 1 2 3\n"
                        "epoch 0 batch 1 ids 4 5 6 7\n"
                        "epoch 0 batch 2 ids 8 9\n") == 0);
    CHECK(strcmp(r.err, "") == 0);
    const Tmix__Hello *h = f.requests[0]->hello;
    CHECK(strcmp(h->group, "g") == 0 && h->mode == TMIX__GROUP_MODE__BROADCAST);
    CHECK(h->batch_size == 4 && h->dtype == TMIX__DTYPE__UINT8 && h->layout == TMIX__LAYOUT__NHWC);
    // Each Next after the first leaves as the batch before it is handed out (libtmix asks
    // ahead), so it acknowledges the batches released before that one: request 3 batch 1.
    for (int i = 1; i <= 3; i++)
        CHECK(f.requests[i]->next->sequence == (uint64_t)i &&
              f.requests[i]->next->ack_through == (i > 2 ? (uint64_t)i - 2 : 0));
    run_free(&r);
    fake_free(&f);
    return 0;
}

// The entry `name` of a safetensors header: dtype, shape and where its bytes are.
static int tensor_at(const cJSON *header, const char *name, const char *dtype, int ndim,
                     const int64_t *shape, size_t *begin, size_t *end)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(header, name);
    CHECK(t != NULL);
    CHECK(strcmp(cJSON_GetObjectItemCaseSensitive(t, "dtype")->valuestring, dtype) == 0);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(t, "shape");
    CHECK(cJSON_GetArraySize(s) == ndim);
    for (int d = 0; d < ndim; d++)
        CHECK(cJSON_GetArrayItem(s, d)->valuedouble == (double)shape[d]);
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    *begin = (size_t)cJSON_GetArrayItem(o, 0)->valuedouble;
    *end = (size_t)cJSON_GetArrayItem(o, 1)->valuedouble;
    return 0;
}

static int pull_out(void)
{
    fake_daemon f = {.dtype = TMIX__DTYPE__UINT8};
    CHECK(fake_start(&f, epoch_of_ten, 4) == 0);
    char path[160];
    snprintf(path, sizeof(path), "%s/got.safetensors", f.dir);
    run_result r;
    const char *args[] = {"pull", "-e", f.url, "--batches", "3", "--out", path, NULL};
    CHECK(run_tmixctl(f.dir, args, &r) == 0);
    CHECK(fake_stop(&f) == 0);
    printf("%s%s", r.out, r.err);
    CHECK(r.status == 0);
    CHECK_SAYS(r.out, "images 3x2x2 uint8 nchw, 10 classes, method mixup, n = 2");
    CHECK_SAYS(r.out, "epoch 0 batch 2: 2 samples; 8 (0.75) + 1 (0.25) | 9 (0.75) + 2 (0.25)");
    CHECK_SAYS(r.out, "pulled 3 batches, 10 images in");
    run_free(&r);

    size_t len;
    char *file = slurp(path, &len);
    CHECK(file != NULL && len >= 8);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)(uint8_t)file[i] << (8 * i);
    CHECK(hlen % 8 == 0 && 8 + hlen <= len);
    cJSON *header = cJSON_ParseWithLength(file + 8, hlen);
    CHECK(header != NULL);
    const uint8_t *data = (const uint8_t *)file + 8 + hlen;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(header, "__metadata__");
    CHECK(strcmp(cJSON_GetObjectItemCaseSensitive(meta, "format")->valuestring, "tmix-batches") ==
          0);
    CHECK(strcmp(cJSON_GetObjectItemCaseSensitive(meta, "method")->valuestring, "mixup") == 0);

    size_t b, e, total = 0;
    CHECK(tensor_at(header, "images", "U8", 4, (int64_t[]){10, 3, 2, 2}, &b, &e) == 0);
    CHECK(e - b == 10 * FAKE_IMAGE_ELEMS);
    for (uint64_t seq = 1, at = b; seq <= 3; seq++) {
        const size_t bytes = (seq == 3 ? 2 : 4) * FAKE_IMAGE_ELEMS;
        for (size_t j = 0; j < bytes; j++)
            CHECK(data[at + j] == fake_image_byte(seq, j));
        at += bytes;
    }
    total += e - b;
    CHECK(tensor_at(header, "sample_ids", "I64", 1, (int64_t[]){10}, &b, &e) == 0);
    CHECK(b % 8 == 0 && e - b == 80);
    for (int64_t i = 0; i < 10; i++)
        CHECK(memcmp(data + b + 8 * i, &i, 8) == 0); // little-endian host
    total += e - b;
    CHECK(tensor_at(header, "sources", "I64", 2, (int64_t[]){10, 2}, &b, &e) == 0);
    const int64_t src_9_1 = 9 + FAKE_PARTNER;
    CHECK(memcmp(data + b + 8 * 19, &src_9_1, 8) == 0);
    total += e - b;
    CHECK(tensor_at(header, "labels", "I64", 2, (int64_t[]){10, 2}, &b, &e) == 0);
    const int64_t label_7_1 = (7 + FAKE_PARTNER) % 10;
    CHECK(memcmp(data + b + 8 * 15, &label_7_1, 8) == 0);
    total += e - b;
    CHECK(tensor_at(header, "weights", "F32", 2, (int64_t[]){10, 2}, &b, &e) == 0);
    CHECK(b % 4 == 0);
    const float w[2] = {0.75f, 0.25f};
    CHECK(memcmp(data + b + 4 * 18, w, 8) == 0);
    total += e - b;
    CHECK(tensor_at(header, "epoch", "I64", 1, (int64_t[]){3}, &b, &e) == 0);
    total += e - b;
    CHECK(tensor_at(header, "index", "I64", 1, (int64_t[]){3}, &b, &e) == 0);
    const int64_t index[3] = {0, 1, 2};
    CHECK(memcmp(data + b, index, sizeof(index)) == 0);
    total += e - b;
    CHECK(8 + hlen + total == len); // no holes, nothing after
    cJSON_Delete(header);
    free(file);
    char tmp[170];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0);
    unlink(path);
    fake_free(&f);
    return 0;
}

static void status_script(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    reply_status(r);
}

static int status(void)
{
    fake_daemon f = {0};
    CHECK(fake_start(&f, status_script, 1) == 0);
    run_result r;
    const char *args[] = {"status", "-e", f.url, NULL};
    CHECK(run_tmixctl(f.dir, args, &r) == 0);
    CHECK(fake_stop(&f) == 0);
    printf("%s%s", r.out, r.err);
    CHECK(r.status == 0);
    char first[200];
    snprintf(first, sizeof(first), "tmixd 0.1.0 at %s\n", f.url);
    CHECK(strncmp(r.out, first, strlen(first)) == 0);
    CHECK_SAYS(r.out, "uptime          01:02:03\n");
    CHECK_SAYS(r.out, "data set        idx:/data/fashion-mnist (train), 60000 samples\n");
    CHECK_SAYS(r.out, "bad samples     2\n");
    CHECK_SAYS(r.out, "batch memory    5.0 of 1024.0 MiB\n");
    CHECK_SAYS(r.out, "GPU memory      3.0 of 80.0 GiB in use\n");
    CHECK_SAYS(r.out, "workers' queue  3 batches\n");
    CHECK_SAYS(r.out, "per batch       read 12.5 ms, mix 2.5 ms (means); Next to batch p50 <= 1 "
                      "ms, p99 <= 25 ms\n");
    CHECK_SAYS(r.out, "alpha                    shard       1/2       2    128       4");
    CHECK_SAYS(r.out, "17/469           1000         128000         2/1");
    CHECK_SAYS(r.out, "beta                     broadcast     -       1");
    CHECK_SAYS(r.out, "128128         2/2");
    run_free(&r);
    fake_free(&f);
    return 0;
}

static void busy(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    reply_error(r, TMIX__ERROR__CODE__BUSY, "4 trainers already");
}

static int runtime_error(void)
{
    fake_daemon f = {0};
    CHECK(fake_start(&f, busy, 1) == 0);
    run_result r;
    const char *args[] = {"pull", "-e", f.url, "--batches", "1", NULL};
    CHECK(run_tmixctl(f.dir, args, &r) == 0);
    CHECK(fake_stop(&f) == 0);
    CHECK(r.status == 1);
    CHECK(strcmp(r.out, "") == 0);
    char want[300];
    snprintf(want, sizeof(want),
             "tmixctl: %s: Hello: the daemon answered BUSY: 4 trainers "
             "already\n",
             f.url);
    CHECK(strcmp(r.err, want) == 0);
    run_free(&r);
    fake_free(&f);
    return 0;
}

static int bench(void)
{
    fake_daemon f = {.quiet_ms = 1000};
    CHECK(fake_start(&f, epoch_of_ten, 0) == 0);
    run_result r;
    const char *args[] = {"bench", "-e", f.url, "--seconds", "0.2", "--trainers", "2", NULL};
    CHECK(run_tmixctl(f.dir, args, &r) == 0);
    CHECK(fake_stop(&f) == 0);
    printf("%s%s", r.out, r.err);
    CHECK(r.status == 0);
    CHECK(strncmp(r.out,
                  "trainers    batches       images     images/s    p50 ms    p99 ms least share\n"
                  "       2 ",
                  87) == 0);
    unsigned k;
    unsigned long long batches, images;
    double rate, p50, p99, share;
    CHECK(sscanf(strchr(r.out, '\n') + 1, "%u %llu %llu %lf %lf %lf %lf", &k, &batches, &images,
                 &rate, &p50, &p99, &share) == 7);
    CHECK(k == 2 && batches > 0 && images >= batches * 2 && images <= batches * FAKE_BATCH);
    CHECK(share > 0 && share <= 1); // the fewest batches of a trainer over half of them
    CHECK(f.count >= 2 + (int)batches); // two Hellos and a Next per batch
    const Tmix__Hello *h = f.requests[0]->hello;
    CHECK(h && strcmp(h->group, "bench") == 0);
    run_free(&r);
    fake_free(&f);
    return 0;
}

// --touch reads every batch and adds the trainer's cost per batch beside a memcpy's; a
// step of 1 ms after each batch leaves the columns as they are.
static int bench_touch(void)
{
    fake_daemon f = {.quiet_ms = 1000};
    CHECK(fake_start(&f, epoch_of_ten, 0) == 0);
    run_result r;
    const char *args[] = {"bench",   "-e",        f.url, "--seconds", "0.2",
                          "--touch", "--step-ms", "1",   NULL};
    CHECK(run_tmixctl(f.dir, args, &r) == 0);
    CHECK(fake_stop(&f) == 0);
    printf("%s%s", r.out, r.err);
    CHECK(r.status == 0);
    CHECK(strstr(r.out, "p99 ms  touch ms trainer ms  memcpy ms least share\n") != NULL);
    unsigned k;
    unsigned long long batches, images;
    double rate, p50, p99, touch, trainer, copy, share;
    CHECK(sscanf(strchr(r.out, '\n') + 1, "%u %llu %llu %lf %lf %lf %lf %lf %lf %lf", &k,
                 &batches, &images, &rate, &p50, &p99, &touch, &trainer, &copy, &share) == 10);
    CHECK(k == 1 && batches > 0 && touch >= 0 && trainer >= touch && copy >= 0); // 192-byte batches
    CHECK(share == 1); // one trainer has every batch
    run_free(&r);
    fake_free(&f);
    return 0;
}

int main(int argc, char **argv)
{
    static const test_case tests[] = {
        {"tmixctl.pull_print_ids", pull_print_ids},
        {"tmixctl.pull_out", pull_out},
        {"tmixctl.status", status},
        {"tmixctl.runtime_error", runtime_error},
        {"tmixctl.bench", bench},
        {"tmixctl.bench_touch", bench_touch},
        {NULL, NULL},
    };
    return test_main(argc, argv, tests);
}
