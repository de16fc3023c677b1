// The config table: defaults, deploy/tmixd.conf, file < override precedence, every kind of
// value and every error message, exactly.
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "conf_test_util.h"
#include "config.h"
#include "config_table.h"
#include "paths.h"

// cfg as tmixd_config_write prints it (malloc'd).
static char *written(const tmixd_config *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    tmixd_config_write(cfg, f);
    fclose(f);
    return text;
}

// Every setting at the default of its table row, without deploy/tmixd.conf.
static int table_defaults(tmixd_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < tmixd_setting_count; i++) {
        const tmixd_setting *s = &tmixd_settings[i];
        TMIX_TRY(tmixd_setting_apply(cfg, s->section, s->key, s->def, "table", s->key));
    }
    return 0;
}

// Writes text to the scratch file NAME and loads it over the defaults into cfg.
static int load_text(tmixd_config *cfg, const char *name, const char *text)
{
    if (write_text(scratch_path(name), text) != 0)
        return tmix_fail(TMIX_EIO, "cannot write %s", scratch_path(name));
    TMIX_TRY(tmixd_config_defaults(cfg));
    return tmixd_config_load_file(cfg, scratch_path(name));
}

// from_args over a list of string literals.
#define FROM_ARGS(cfg, ...)                                                                \
    tmixd_config_from_args((cfg), COUNT(((char *[]){__VA_ARGS__})), (char *[]){__VA_ARGS__})

static int test_defaults(void)
{
    tmixd_config cfg;
    CHECK_OK(tmixd_config_defaults(&cfg));
    CHECK(strcmp(cfg.server_endpoint, "") == 0);
    CHECK(strcmp(cfg.server_state_dir, "") == 0);
    CHECK(cfg.server_max_memory_mb == 1024);
    CHECK(cfg.server_seed == 0);
    CHECK(cfg.server_workers == 0 && cfg.server_prefetch == 0);
    CHECK(cfg.server_lease_timeout_s == 60.0);
    CHECK(cfg.server_max_trainers == 64 && cfg.server_max_request_bytes == 65536);
    CHECK(cfg.server_log_level == TMIXD_LOG_INFO && strcmp(cfg.server_log_file, "") == 0);
    CHECK(cfg.dataset_format == TMIXD_FORMAT_IDX && cfg.dataset_split == TMIXD_SPLIT_TRAIN);
    CHECK(strcmp(cfg.dataset_path, "/usr/share/datasets/fashion-mnist") == 0);
    CHECK(cfg.augment_size == 0 && cfg.augment_crop == TMIXD_AUGMENT_CROP_NONE && cfg.augment_pad == 4);
    CHECK(cfg.augment_flip);
    CHECK(cfg.augment_scale_min == 0.08 && cfg.augment_scale_max == 1.0);
    CHECK(cfg.augment_mean.count == 0 && cfg.augment_mean.values == NULL);
    CHECK(cfg.augment_std.count == 0);
    CHECK(cfg.mix_method == TMIX_MIX_MIXUP && strcmp(cfg.mix_module, "") == 0);
    CHECK(cfg.mix_alpha == 1.0 && cfg.mix_n == 2);
    CHECK(strcmp(cfg.teacher_path, "") == 0);
    CHECK(cfg.output_dtype == TMIXD_DTYPE_FLOAT32 && cfg.output_layout == TMIXD_LAYOUT_NCHW);
    CHECK(cfg.output_batch_size == 128);
    CHECK_OK(tmixd_config_check(&cfg));
    tmixd_config_free(&cfg);
    return 0;
}

// deploy/tmixd.conf is the table written out: after its preamble (the lines before the first
// section) it is exactly what tmixd_config_write prints for the defaults, so every key is
// there, in its section, after its meaning, type, bounds and default.
static int test_deploy_documents_every_key(void)
{
    char *deploy = read_text(TMIXD_DEPLOY_CONF);
    CHECK(deploy != NULL);
    const char *body = strstr(deploy, "\n[");
    CHECK(body != NULL);
    tmixd_config cfg;
    CHECK_OK(tmixd_config_defaults(&cfg));
    char *text = written(&cfg);
    if (strcmp(body + 1, text) != 0) {
        fprintf(stderr, "deploy/tmixd.conf differs from tmixd_config_write; it should end "
                        "with:\n%s", text);
        return 1;
    }
    for (int i = 0; i < tmixd_setting_count; i++) {
        const tmixd_setting *s = &tmixd_settings[i];
        char header[64], line[96];
        snprintf(header, sizeof header, "\n[%s]\n", s->section);
        snprintf(line, sizeof line, "\n%s =", s->key);
        const char *section = strstr(deploy, header);
        CHECK(section != NULL);
        const char *key = strstr(section, line), *next = strstr(section + 1, "\n[");
        CHECK(key != NULL && (next == NULL || key < next));
    }
    free(text);
    free(deploy);
    tmixd_config_free(&cfg);
    return 0;
}

// Loading deploy/tmixd.conf from disk gives the embedded defaults, and both equal the
// defaults of the table rows.
static int test_deploy_equals_embedded(void)
{
    tmixd_config from_table, from_disk, embedded;
    CHECK_OK(table_defaults(&from_table));
    CHECK_OK(table_defaults(&from_disk));
    CHECK_OK(tmixd_config_load_file(&from_disk, TMIXD_DEPLOY_CONF));
    CHECK_OK(tmixd_config_defaults(&embedded));
    char *a = written(&from_table), *b = written(&from_disk), *c = written(&embedded);
    CHECK(strcmp(a, b) == 0);
    CHECK(strcmp(b, c) == 0);
    free(a);
    free(b);
    free(c);
    tmixd_config_free(&from_table);
    tmixd_config_free(&from_disk);
    tmixd_config_free(&embedded);
    return 0;
}

// Overrides win over the file wherever they stand; the file wins over the defaults.
static int test_file_then_overrides(void)
{
    const char *path = scratch_path("precedence.conf");
    CHECK(write_text(path, "[mix]\nalpha = 0.4\nn = 3\n[server]\nseed = 7\n") == 0);
    char config_eq[700];
    snprintf(config_eq, sizeof config_eq, "--config=%s", path);
    char *with_c[] = {"--mix.alpha=0.2", "-c", (char *)path, "--server.seed=9"};
    char *with_config[] = {"--mix.alpha=0.2", "--config", (char *)path, "--server.seed=9"};
    char *with_config_eq[] = {"--mix.alpha=0.2", config_eq, "--server.seed=9"};
    char **forms[] = {with_c, with_config, with_config_eq};
    int counts[] = {4, 4, 3};
    for (int i = 0; i < 3; i++) {
        tmixd_config cfg;
        CHECK_OK(tmixd_config_from_args(&cfg, counts[i], forms[i]));
        CHECK(cfg.mix_alpha == 0.2);
        CHECK(cfg.mix_n == 3);
        CHECK(cfg.server_seed == 9);
        CHECK(cfg.mix_method == TMIX_MIX_MIXUP); // untouched: the default
        tmixd_config_free(&cfg);
    }
    // No file: defaults and overrides; a later override of one key beats an earlier one.
    tmixd_config cfg;
    CHECK_OK(FROM_ARGS(&cfg, "--mix.n=3", "--dataset.path=/data/x", "--mix.n=2"));
    CHECK(cfg.mix_n == 2 && strcmp(cfg.dataset_path, "/data/x") == 0);
    tmixd_config_free(&cfg);
    CHECK_OK(tmixd_config_from_args(&cfg, 0, NULL));
    CHECK(cfg.mix_n == 2);
    tmixd_config_free(&cfg);
    return 0;
}

// The INI dialect: comments, indented keys, inline ';' comments, CRLF, ':', repeated keys.
static int test_file_syntax(void)
{
    tmixd_config cfg;
    CHECK_OK(load_text(&cfg, "syntax.conf",
                       "\xEF\xBB\xBF# comment\r\n; another\r\n[mix]\r\n"
                       "    alpha = 0.5 ; inline comment\r\n\tn: 3\r\n"
                       "[dataset]\npath = /srv/data # not a comment\n"
                       "[server]\nseed = 1\nseed = 2\n"));
    CHECK(cfg.mix_alpha == 0.5);
    CHECK(cfg.mix_n == 3);
    CHECK(strcmp(cfg.dataset_path, "/srv/data # not a comment") == 0);
    CHECK(cfg.server_seed == 2);
    tmixd_config_free(&cfg);
    return 0;
}

static int test_set(void)
{
    tmixd_config cfg;
    CHECK_OK(tmixd_config_defaults(&cfg));
    CHECK_OK(tmixd_config_set(&cfg, "mix.alpha", "0.25", "test"));
    CHECK(cfg.mix_alpha == 0.25);
    CHECK_OK(tmixd_config_set(&cfg, "teacher.path", "/t.safetensors", "test"));
    CHECK(strcmp(cfg.teacher_path, "/t.safetensors") == 0);
    // A failed set leaves the value as it was.
    CHECK_MSG(tmixd_config_set(&cfg, "mix.alpha", "abc", "x.conf:3"), TMIX_EINVAL,
              "x.conf:3: [mix] alpha = 'abc': not a number");
    CHECK(cfg.mix_alpha == 0.25);
    CHECK_MSG(tmixd_config_set(&cfg, "teacher.path", "a\nb", "test"), TMIX_EINVAL,
              "test: [teacher] path = 'a\nb': contains the control character 0x0a");
    CHECK(strcmp(cfg.teacher_path, "/t.safetensors") == 0);
    CHECK_MSG(tmixd_config_set(&cfg, "alpha", "1", "test"), TMIX_EINVAL,
              "test: alpha = '1': not a setting name (expected section.key)");
    char buf[64];
    CHECK_OK(tmixd_config_get(&cfg, "mix.alpha", buf, sizeof buf));
    CHECK(strcmp(buf, "0.25") == 0);
    CHECK_OK(tmixd_config_get(&cfg, "dataset.format", buf, sizeof buf));
    CHECK(strcmp(buf, "idx") == 0);
    CHECK_MSG(tmixd_config_get(&cfg, "dataset.path", buf, 8), TMIX_EINVAL,
              "config: dataset.path: value longer than 7 bytes");
    CHECK_MSG(tmixd_config_get(&cfg, "mix.beta", buf, sizeof buf), TMIX_EINVAL,
              "config: no setting 'mix.beta'");
    tmixd_config_free(&cfg);
    return 0;
}

// Each value of each word list reaches the field as its enum constant.
static int test_enums(void)
{
    static const struct {
        const char *key, *word;
        int want;
    } cases[] = {
        {"server.log_level", "debug", TMIXD_LOG_DEBUG},
        {"server.log_level", "error", TMIXD_LOG_ERROR},
        {"dataset.format", "cifar", TMIXD_FORMAT_CIFAR},
        {"dataset.format", "imagefolder", TMIXD_FORMAT_IMAGEFOLDER},
        {"dataset.split", "test", TMIXD_SPLIT_TEST},
        {"augment.crop", "random-resized", TMIXD_AUGMENT_CROP_RANDOM_RESIZED},
        {"augment.crop", "pad", TMIXD_AUGMENT_CROP_PAD},
        {"mix.method", "transformmix", TMIX_MIX_TRANSFORMMIX},
        {"mix.method", "softmax-cam", TMIX_MIX_SOFTMAX_CAM},
        {"output.dtype", "uint8", TMIXD_DTYPE_UINT8},
        {"output.layout", "nhwc", TMIXD_LAYOUT_NHWC},
    };
    tmixd_config cfg;
    CHECK_OK(tmixd_config_defaults(&cfg));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_OK(tmixd_config_set(&cfg, cases[i].key, cases[i].word, "test"));
        char buf[32];
        CHECK_OK(tmixd_config_get(&cfg, cases[i].key, buf, sizeof buf));
        CHECK(strcmp(buf, cases[i].word) == 0);
    }
    CHECK(cfg.server_log_level == TMIXD_LOG_ERROR);
    CHECK(cfg.dataset_format == TMIXD_FORMAT_IMAGEFOLDER);
    CHECK(cfg.dataset_split == TMIXD_SPLIT_TEST);
    CHECK(cfg.augment_crop == TMIXD_AUGMENT_CROP_PAD);
    CHECK(cfg.mix_method == TMIX_MIX_SOFTMAX_CAM);
    CHECK(cfg.output_dtype == TMIXD_DTYPE_UINT8 && cfg.output_layout == TMIXD_LAYOUT_NHWC);
    CHECK_MSG(tmixd_config_set(&cfg, "mix.method", "Mixup", "test"), TMIX_EINVAL,
              "test: [mix] method = 'Mixup': not one of: none, mixup, cutmix, softmax-cam, "
              "stn-only, mpn-only, transformmix");
    CHECK(cfg.mix_method == TMIX_MIX_SOFTMAX_CAM);
    tmixd_config_free(&cfg);
    return 0;
}

static int test_bools(void)
{
    const char *yes[] = {"true", "yes", "on", "1", "TRUE", "Yes"};
    const char *no[] = {"false", "no", "off", "0", "False", "OFF"};
    tmixd_config cfg;
    CHECK_OK(tmixd_config_defaults(&cfg));
    for (int i = 0; i < 6; i++) {
        CHECK_OK(tmixd_config_set(&cfg, "augment.flip", no[i], "test"));
        CHECK(!cfg.augment_flip);
        CHECK_OK(tmixd_config_set(&cfg, "augment.flip", yes[i], "test"));
        CHECK(cfg.augment_flip);
    }
    const char *bad[] = {"maybe", "", "2", "y", "truee"};
    for (int i = 0; i < 5; i++) {
        char want[200];
        snprintf(want, sizeof want, "test: [augment] flip = '%s': not a bool (true/false, "
                 "yes/no, on/off, 1/0)", bad[i]);
        CHECK_MSG(tmixd_config_set(&cfg, "augment.flip", bad[i], "test"), TMIX_EINVAL, want);
    }
    char buf[8];
    CHECK_OK(tmixd_config_get(&cfg, "augment.flip", buf, sizeof buf));
    CHECK(strcmp(buf, "true") == 0);
    tmixd_config_free(&cfg);
    return 0;
}

static int test_floats(void)
{
    tmixd_config cfg;
    CHECK_OK(tmixd_config_defaults(&cfg));
    CHECK_OK(tmixd_config_set(&cfg, "augment.mean", " 0.4914,0.4822 , 0.4465", "test"));
    CHECK(cfg.augment_mean.count == 3);
    CHECK(cfg.augment_mean.values[0] == 0.4914f && cfg.augment_mean.values[1] == 0.4822f &&
          cfg.augment_mean.values[2] == 0.4465f);
    char buf[64];
    CHECK_OK(tmixd_config_get(&cfg, "augment.mean", buf, sizeof buf));
    CHECK(strcmp(buf, "0.4914, 0.4822, 0.4465") == 0);
    CHECK_OK(tmixd_config_set(&cfg, "augment.mean", "-1e3", "test"));
    CHECK(cfg.augment_mean.count == 1 && cfg.augment_mean.values[0] == -1000.0f);
    CHECK_OK(tmixd_config_set(&cfg, "augment.std", "0.25,0.5,2", "test"));
    CHECK(cfg.augment_std.count == 3 && cfg.augment_std.values[2] == 2.0f);
    CHECK_OK(tmixd_config_set(&cfg, "augment.std", "auto", "test"));
    CHECK(cfg.augment_std.count == 0 && cfg.augment_std.values == NULL);
    CHECK_OK(tmixd_config_get(&cfg, "augment.std", buf, sizeof buf));
    CHECK(strcmp(buf, "auto") == 0);

    CHECK_MSG(tmixd_config_set(&cfg, "augment.mean", "0.5,x", "test"), TMIX_EINVAL,
              "test: [augment] mean = '0.5,x': item 2 'x' is not a number (expected numbers "
              "separated by commas, or auto)");
    CHECK_MSG(tmixd_config_set(&cfg, "augment.mean", "0.5,", "test"), TMIX_EINVAL,
              "test: [augment] mean = '0.5,': item 2 '' is not a number (expected numbers "
              "separated by commas, or auto)");
    CHECK_MSG(tmixd_config_set(&cfg, "augment.std", "0.2, 0", "test"), TMIX_EINVAL,
              "test: [augment] std = '0.2, 0': item 2 (0) is out of range (0, inf)");
    CHECK_MSG(tmixd_config_set(&cfg, "augment.mean", "", "test"), TMIX_EINVAL,
              "test: [augment] mean = '': item 1 '' is not a number (expected numbers "
              "separated by commas, or auto)");
    char many[400] = "0";
    for (int i = 0; i < TMIXD_FLOATS_MAX; i++)
        strcat(many, ",0");
    CHECK_ERR(tmixd_config_set(&cfg, "augment.mean", many, "test"), TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), ": more than 64 numbers") != NULL);
    CHECK(cfg.augment_mean.count == 1); // unchanged by the failures

    // mean and std must agree in length when both are given.
    CHECK_OK(tmixd_config_set(&cfg, "augment.std", "0.5,0.5", "test"));
    CHECK_MSG(tmixd_config_check(&cfg), TMIX_EINVAL,
              "config: [augment] mean has 1 numbers but [augment] std has 2");
    tmixd_config_free(&cfg);
    return 0;
}

// Numbers: integer syntax, 64-bit range, bounds (closed and open) named in the message.
static int test_numbers(void)
{
    static const struct {
        const char *arg, *reason;
    } bad[] = {
        {"--mix.n=5", "out of range [2, 3]"},
        {"--mix.n=1.5", "not an integer"},
        {"--mix.n= 2", "not an integer"},
        {"--mix.n=", "not an integer"},
        {"--server.max_memory_mb=99999999999999999999", "out of range [16, 1048576]"},
        {"--server.seed=-1", "not an unsigned integer"},
        {"--server.seed=18446744073709551616", "out of range [0, 18446744073709551615]"},
        {"--mix.alpha=abc", "not a number"},
        {"--mix.alpha=nan", "not a number"},
        {"--mix.alpha=0", "out of range [0.001, 1000]"},
        {"--mix.alpha=1e999", "out of range [0.001, 1000]"},
        {"--augment.scale_min=0", "out of range (0, 1]"},
        {"--augment.scale_max=1.01", "out of range (0, 1]"},
        {"--server.lease_timeout_s=0.05", "out of range [0.1, 86400]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tmixd_config cfg;
        char want[200];
        snprintf(want, sizeof want, "command line: %s: %s", bad[i].arg, bad[i].reason);
        CHECK_MSG(FROM_ARGS(&cfg, (char *)bad[i].arg), TMIX_EINVAL, want);
        tmixd_config_free(&cfg);
    }
    tmixd_config cfg;
    CHECK_OK(FROM_ARGS(&cfg, "--server.seed=18446744073709551615", "--mix.n=+3",
                       "--augment.scale_min=1", "--mix.alpha=1e-3", "--augment.size=-0"));
    CHECK(cfg.server_seed == UINT64_MAX && cfg.mix_n == 3 && cfg.augment_scale_min == 1.0);
    CHECK(cfg.mix_alpha == 0.001 && cfg.augment_size == 0);
    tmixd_config_free(&cfg);
    // scale_min above scale_max is caught once both are known.
    CHECK_MSG(FROM_ARGS(&cfg, "--augment.scale_min=0.9", "--augment.scale_max=0.5"),
              TMIX_EINVAL, "config: [augment] scale_min = 0.9 is above [augment] scale_max = 0.5");
    tmixd_config_free(&cfg);
    return 0;
}

// Unknown sections and keys, on the command line and in a file with the line number.
static int test_unknown_names(void)
{
    tmixd_config cfg;
    CHECK_MSG(FROM_ARGS(&cfg, "--mixx.alpha=1"), TMIX_EINVAL,
              "command line: --mixx.alpha=1: unknown section [mixx] (sections: server, "
              "dataset, augment, mix, teacher, output, search, train, eval)");
    tmixd_config_free(&cfg);
    CHECK_MSG(FROM_ARGS(&cfg, "--mix.alhpa=1"), TMIX_EINVAL,
              "command line: --mix.alhpa=1: unknown key 'alhpa' in [mix] (keys: method, "
              "module, alpha, n, precision, graphs, lanes)");
    tmixd_config_free(&cfg);

    char want[800];
    snprintf(want, sizeof want, "%s:3: [mix] alhpa = '1': unknown key 'alhpa' in [mix] "
             "(keys: method, module, alpha, n, precision, graphs, lanes)", scratch_path("key.conf"));
    CHECK_MSG(load_text(&cfg, "key.conf", "# tmixd\n[mix]\nalhpa = 1\n"), TMIX_EINVAL, want);
    tmixd_config_free(&cfg);

    // An unknown section is an error at its header, even with no key under it.
    snprintf(want, sizeof want, "%s:4: [mixx]: unknown section [mixx] (sections: server, "
             "dataset, augment, mix, teacher, output, search, train, eval)", scratch_path("section.conf"));
    CHECK_MSG(load_text(&cfg, "section.conf", "[server]\nseed = 3\n\n[mixx]\n"), TMIX_EINVAL,
              want);
    CHECK(cfg.server_seed == 3); // lines before the error stay applied
    tmixd_config_free(&cfg);

    snprintf(want, sizeof want, "%s:1: [] seed = '3': key before any [section]",
             scratch_path("nosection.conf"));
    CHECK_MSG(load_text(&cfg, "nosection.conf", "seed = 3\n"), TMIX_EINVAL, want);
    tmixd_config_free(&cfg);
    return 0;
}

// Bad values and bad lines in a file name the file and the line.
static int test_file_errors(void)
{
    static const struct {
        const char *text;
        const char *message; // after "PATH:"
    } cases[] = {
        {"[server]\nseed = 1\n\n[mix]\nmethod = mixup\n# alpha\n\n\n\n\n\nalpha = abc\n",
         "12: [mix] alpha = 'abc': not a number"},
        {"[mix]\nn = 5\n", "2: [mix] n = '5': out of range [2, 3]"},
        {"[augment]\nflip = maybe\n",
         "2: [augment] flip = 'maybe': not a bool (true/false, yes/no, on/off, 1/0)"},
        {"[output]\ndtype = float64\n",
         "2: [output] dtype = 'float64': not one of: float32, float16, uint8"},
        {"[mix]\nalpha = 1\ngarbage\nn = 9\n",
         "3: 'garbage': not a setting (expected key = value, [section] or a # comment)"},
        {"[mix\nalpha = 1\n", "1: [mix: section header without ']'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tmixd_config cfg;
        char want[800];
        snprintf(want, sizeof want, "%s:%s", scratch_path("bad.conf"), cases[i].message);
        CHECK_MSG(load_text(&cfg, "bad.conf", cases[i].text), TMIX_EINVAL, want);
        tmixd_config_free(&cfg);
    }
    // Lines inih would cut in two are refused, except comments.
    char text[1024] = "[dataset]\n# ";
    memset(text + strlen(text), 'x', 300);
    strcat(text, "\npath = /");
    memset(text + strlen(text), 'y', 300);
    strcat(text, "\n");
    tmixd_config cfg;
    char want[800];
    snprintf(want, sizeof want, "%s:3: line longer than 198 characters",
             scratch_path("long.conf"));
    CHECK_MSG(load_text(&cfg, "long.conf", text), TMIX_EINVAL, want);
    tmixd_config_free(&cfg);
    // A NUL byte: not a text file.
    FILE *f = fopen(scratch_path("nul.conf"), "wb");
    CHECK(f != NULL);
    fwrite("[mix]\0n = 3\n", 1, 12, f);
    fclose(f);
    CHECK_OK(tmixd_config_defaults(&cfg));
    snprintf(want, sizeof want, "config file %s: contains a NUL byte (not a text file)",
             scratch_path("nul.conf"));
    CHECK_MSG(tmixd_config_load_file(&cfg, scratch_path("nul.conf")), TMIX_EINVAL, want);
    tmixd_config_free(&cfg);
    return 0;
}

static int test_unreadable_files(void)
{
    tmixd_config cfg;
    char want[800];
    snprintf(want, sizeof want, "config file %s: cannot open: No such file or directory",
             scratch_path("missing.conf"));
    char config_eq[700];
    snprintf(config_eq, sizeof config_eq, "--config=%s", scratch_path("missing.conf"));
    CHECK_MSG(FROM_ARGS(&cfg, config_eq), TMIX_ENOENT, want);
    tmixd_config_free(&cfg);
    CHECK_OK(tmixd_config_defaults(&cfg));
    snprintf(want, sizeof want, "config file %s: cannot read: Is a directory", scratch_dir());
    CHECK_MSG(tmixd_config_load_file(&cfg, scratch_dir()), TMIX_EIO, want);
    tmixd_config_free(&cfg);
    return 0;
}

static int test_bad_arguments(void)
{
    tmixd_config cfg;
    const char *path = scratch_path("args.conf");
    CHECK(write_text(path, "[mix]\nn = 3\n") == 0);
    CHECK_MSG(FROM_ARGS(&cfg, "--mix.n=3", "serve"), TMIX_EINVAL,
              "command line: serve: not an option (expected -c FILE, --config=FILE or "
              "--section.key=value)");
    tmixd_config_free(&cfg);
    const char *not_options[] = {"--mix.n", "-mix.n=3", "--mix=3", "--.n=3", "--print-config"};
    for (int i = 0; i < 5; i++) {
        char want[200];
        snprintf(want, sizeof want, "command line: %s: not an option (expected -c FILE, "
                 "--config=FILE or --section.key=value)", not_options[i]);
        CHECK_MSG(FROM_ARGS(&cfg, (char *)not_options[i]), TMIX_EINVAL, want);
        tmixd_config_free(&cfg);
    }
    CHECK_MSG(FROM_ARGS(&cfg, "--mix.n=3", "-c"), TMIX_EINVAL, "command line: -c: missing FILE");
    tmixd_config_free(&cfg);
    CHECK_MSG(FROM_ARGS(&cfg, "--config="), TMIX_EINVAL,
              "command line: --config=: missing FILE");
    tmixd_config_free(&cfg);
    char want[800];
    snprintf(want, sizeof want, "command line: /other.conf: a second config file (the first is "
             "%s)", path);
    CHECK_MSG(FROM_ARGS(&cfg, "-c", (char *)path, "--config", "/other.conf"), TMIX_EINVAL, want);
    tmixd_config_free(&cfg);
    return 0;
}

// What tmixd_config_write prints reads back as the same config.
static int test_write_reads_back(void)
{
    tmixd_config cfg, back;
    CHECK_OK(FROM_ARGS(&cfg, "--server.endpoint=tcp://127.0.0.1:5555", "--server.seed=42",
                       "--augment.mean=0.1,0.2,0.3", "--augment.std=0.3, 0.2, 0.1",
                       "--augment.flip=off", "--mix.method=cutmix", "--mix.alpha=0.3",
                       "--server.lease_timeout_s=12.5", "--augment.crop=random-resized"));
    char *text = written(&cfg);
    CHECK(strstr(text, "\nendpoint = tcp://127.0.0.1:5555\n") != NULL);
    CHECK(strstr(text, "\n# string; default empty\nendpoint =") != NULL);
    CHECK(strstr(text, "\n# integer in [2, 3]; default 2\nn = 2\n") != NULL);
    CHECK(strstr(text, "\nmean = 0.1, 0.2, 0.3\n") != NULL);
    CHECK(strstr(text, "\nmodule =\n") != NULL); // an empty value, no trailing blank
    CHECK(write_text(scratch_path("written.conf"), text) == 0);
    CHECK_OK(tmixd_config_defaults(&back));
    CHECK_OK(tmixd_config_load_file(&back, scratch_path("written.conf")));
    char *again = written(&back);
    CHECK(strcmp(text, again) == 0);
    free(text);
    free(again);
    tmixd_config_free(&cfg);
    tmixd_config_free(&back);
    return 0;
}

static int test_reloadable(void)
{
    CHECK(tmixd_config_reloadable("server.log_level"));
    CHECK(tmixd_config_reloadable("server.lease_timeout_s"));
    CHECK(tmixd_config_reloadable("server.stall_timeout_s"));
    CHECK(!tmixd_config_reloadable("server.endpoint"));
    CHECK(!tmixd_config_reloadable("mix.alpha"));
    CHECK(!tmixd_config_reloadable("mix.nope"));
    CHECK(!tmixd_config_reloadable("log_level"));
    int reloadable = 0;
    for (int i = 0; i < tmixd_setting_count; i++)
        reloadable += tmixd_settings[i].reloadable;
    CHECK(reloadable == 3);
    return 0;
}

static int test_default_paths(void)
{
    char buf[128];
    CHECK_OK(tmixd_endpoint_for(1000, "/run/user/1000", buf, sizeof buf));
    CHECK(strcmp(buf, "ipc:///run/user/1000/tmix/tmixd.sock") == 0);
    CHECK_OK(tmixd_endpoint_for(0, "/run/user/0", buf, sizeof buf));
    CHECK(strcmp(buf, "ipc:///run/tmix/tmixd.sock") == 0);
    CHECK_OK(tmixd_endpoint_for(1000, NULL, buf, sizeof buf));
    CHECK(strcmp(buf, "ipc:///tmp/tmix-1000/tmixd.sock") == 0);
    CHECK_OK(tmixd_endpoint_for(1000, "relative", buf, sizeof buf));
    CHECK(strcmp(buf, "ipc:///tmp/tmix-1000/tmixd.sock") == 0);
    CHECK_MSG(tmixd_endpoint_for(1000, "/run/user/1000", buf, 20), TMIX_EINVAL,
              "default endpoint: longer than 19 bytes");

    CHECK_OK(tmixd_state_dir_for(0, "/s", "/h", buf, sizeof buf));
    CHECK(strcmp(buf, "/var/lib/tmix") == 0);
    CHECK_OK(tmixd_state_dir_for(1000, "/s", "/h", buf, sizeof buf));
    CHECK(strcmp(buf, "/s/tmix") == 0);
    CHECK_OK(tmixd_state_dir_for(1000, "", "/home/u", buf, sizeof buf));
    CHECK(strcmp(buf, "/home/u/.local/state/tmix") == 0);
    CHECK_MSG(tmixd_state_dir_for(1000, NULL, NULL, buf, sizeof buf), TMIX_EINVAL,
              "default state directory: neither XDG_STATE_HOME nor HOME is set; set [server] "
              "state_dir");

    // The real ones read this process's user and environment.
    char want[128];
    CHECK(setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1) == 0);
    CHECK(setenv("XDG_STATE_HOME", "/state/4242", 1) == 0);
    CHECK_OK(tmixd_default_endpoint(buf, sizeof buf));
    CHECK_OK(tmixd_endpoint_for((unsigned)geteuid(), "/run/user/4242", want, sizeof want));
    CHECK(strcmp(buf, want) == 0);
    CHECK_OK(tmixd_default_state_dir(buf, sizeof buf));
    CHECK_OK(tmixd_state_dir_for((unsigned)geteuid(), "/state/4242", NULL, want, sizeof want));
    CHECK(strcmp(buf, want) == 0);
    return 0;
}

int main(int argc, char **argv)
{
    static const test_case tests[] = {
        {"config.defaults", test_defaults},
        {"config.deploy_documents_every_key", test_deploy_documents_every_key},
        {"config.deploy_equals_embedded", test_deploy_equals_embedded},
        {"config.file_then_overrides", test_file_then_overrides},
        {"config.file_syntax", test_file_syntax},
        {"config.set", test_set},
        {"config.enums", test_enums},
        {"config.bools", test_bools},
        {"config.floats", test_floats},
        {"config.numbers", test_numbers},
        {"config.unknown_names", test_unknown_names},
        {"config.file_errors", test_file_errors},
        {"config.unreadable_files", test_unreadable_files},
        {"config.bad_arguments", test_bad_arguments},
        {"config.write_reads_back", test_write_reads_back},
        {"config.reloadable", test_reloadable},
        {"config.default_paths", test_default_paths},
        {NULL, NULL},
    };
    return test_main(argc, argv, tests);
}
