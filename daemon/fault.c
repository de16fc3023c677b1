#include "fault.h"

#include <stdlib.h>
#include <time.h>

void tmixd_fault_delay(const char *name)
{
    const char *value = getenv(name);
    const long ms = value ? atol(value) : 0;
    if (ms > 0)
        nanosleep(&(struct timespec){ms / 1000, ms % 1000 * 1000000}, NULL);
}
