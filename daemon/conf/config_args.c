// `tmixd serve` arguments: one config file and any number of --section.key=value, applied
// as defaults < file < overrides whatever their order on the line.
#include <string.h>

#include "config_table.h"
#include "error.h"

// How many arguments from argv[i] on name a config file: 2 for "-c FILE" and "--config
// FILE", 1 for "--config=FILE", 0 when argv[i] is something else. *name: FILE, or NULL when
// the option ends the line.
static int config_file_arg(int argc, char **argv, int i, const char **name)
{
    const char *a = argv[i];
    if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
        *name = i + 1 < argc ? argv[i + 1] : NULL;
        return 2;
    }
    if (strncmp(a, "--config=", 9) == 0) {
        *name = a + 9;
        return 1;
    }
    return 0;
}

// Finds the config file of argv (NULL when none); fails on a second one or a missing name.
static int find_config_file(int argc, char **argv, const char **file)
{
    *file = NULL;
    for (int i = 0; i < argc; i++) {
        const char *name;
        int used = config_file_arg(argc, argv, i, &name);
        if (used == 0)
            continue;
        if (name == NULL || name[0] == '\0')
            return tmix_fail(TMIX_EINVAL, "command line: %s: missing FILE", argv[i]);
        if (*file != NULL)
            return tmix_fail(TMIX_EINVAL, "command line: %s: a second config file (the first "
                             "is %s)", argv[i + used - 1], *file);
        *file = name;
        i += used - 1;
    }
    return 0;
}

int tmixd_config_from_args(tmixd_config *cfg, int argc, char **argv)
{
    TMIX_TRY(tmixd_config_defaults(cfg));
    const char *file;
    TMIX_TRY(find_config_file(argc, argv, &file));
    if (file != NULL)
        TMIX_TRY(tmixd_config_load_file(cfg, file));
    for (int i = 0; i < argc; i++) {
        const char *name;
        int used = config_file_arg(argc, argv, i, &name);
        if (used == 0)
            TMIX_TRY(tmixd_config_apply_arg(cfg, argv[i]));
        else
            i += used - 1;
    }
    return tmixd_config_check(cfg);
}
