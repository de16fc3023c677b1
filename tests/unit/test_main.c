#include "test_main.h"

#include <string.h>

int test_main(int argc, char **argv, const test_case *tests)
{
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (const test_case *t = tests; t->name; t++)
            printf("%s\n", t->name);
        return 0;
    }
    int failed = 0, ran = 0, skipped = 0;
    for (const test_case *t = tests; t->name; t++) {
        if (argc > 1 && strcmp(argv[1], t->name) != 0)
            continue;
        ran++;
        printf("-- %s\n", t->name);
        fflush(stdout);
        int rc = t->fn();
        printf("%s %s\n", rc == 0 ? "PASS" : rc == 77 ? "SKIP" : "FAIL", t->name);
        failed += rc != 0 && rc != 77;
        skipped += rc == 77;
    }
    if (!ran) {
        fprintf(stderr, "no test named '%s' (see --list)\n", argc > 1 ? argv[1] : "");
        return 2;
    }
    if (ran == skipped)
        return 77;
    return failed ? 1 : 0;
}
