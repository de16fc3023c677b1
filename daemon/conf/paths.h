// The default endpoint and state directory as pure functions of the user id and the
// environment, so that every case can be tested from any account. config.h has the
// versions that read the real ones.
#ifndef TMIXD_PATHS_H
#define TMIXD_PATHS_H

#include <stddef.h>

// runtime_dir: $XDG_RUNTIME_DIR, NULL or "" when unset. Into buf[n]; TMIX_EINVAL when too long.
int tmixd_endpoint_for(unsigned uid, const char *runtime_dir, char *buf, size_t n);

// state_home: $XDG_STATE_HOME, home: $HOME (NULL or "" when unset).
int tmixd_state_dir_for(unsigned uid, const char *state_home, const char *home, char *buf,
                        size_t n);

#endif
