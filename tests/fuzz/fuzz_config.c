// Config parsing: the input as a config file over the defaults, then the cross-key checks
// and the writer (every value printed back).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_table.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    tmixd_config cfg;
    if (tmixd_config_defaults(&cfg) == 0) {
        if (tmixd_config_parse_text(&cfg, text, "fuzz.conf") == 0 &&
            tmixd_config_check(&cfg) == 0) {
            FILE *null = fopen("/dev/null", "w");
            if (null) {
                tmixd_config_write(&cfg, null);
                fclose(null);
            }
        }
        tmixd_config_free(&cfg);
    }
    free(text);
    return 0;
}
