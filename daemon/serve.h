// `tmixd serve`: serves mixed batches until SIGTERM (proto/README.md).
#ifndef TMIXD_SERVE_H
#define TMIXD_SERVE_H

// argv: the arguments after `serve` (-c FILE, --section.key=value). Returns the exit code.
int tmixd_serve_main(int argc, char **argv);

#endif
