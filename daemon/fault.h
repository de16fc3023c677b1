// Fault injection for the tests that prove a slow step does not hold tmixd's loop up.
#ifndef TMIXD_FAULT_H
#define TMIXD_FAULT_H

// Sleeps the milliseconds the environment variable `name` holds, if it is set and positive:
// TMIXD_FAULT_SLOW_SAVE_MS (a progress save, serve.slow_save), TMIXD_FAULT_SLOW_PACK_MS (the
// packing of a batch's images into its reply, serve.slow_pack).
void tmixd_fault_delay(const char *name);

#endif
