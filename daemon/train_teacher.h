// `tmixd train-teacher`: trains a zoo classifier from scratch on the data set and writes the
// teacher file that [teacher] path loads ([train] in deploy/tmixd.conf).
#ifndef TMIXD_TRAIN_TEACHER_H
#define TMIXD_TRAIN_TEACHER_H

// argv: the arguments after `train-teacher` (-c FILE, --section.key=value, --resume,
// --print-config). Returns the exit code.
int tmixd_train_teacher_main(int argc, char **argv);

#endif
