// `tmixd search`: trains the mixing module against the frozen teacher and writes the module
// file that `tmixd serve` loads ([search] in deploy/tmixd.conf).
#ifndef TMIXD_SEARCH_H
#define TMIXD_SEARCH_H

// argv: the arguments after `search` (-c FILE, --section.key=value, --resume,
// --print-config). Returns the exit code.
int tmixd_search_main(int argc, char **argv);

#endif
