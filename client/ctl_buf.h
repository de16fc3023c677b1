// A growing byte buffer for what tmixctl collects before it prints or saves it.
#ifndef TMIXCTL_BUF_H
#define TMIXCTL_BUF_H

#include <stddef.h>

typedef struct {
    unsigned char *data;
    size_t len, cap;
} ctl_buf;

// Room for n more bytes at b->data + b->len (len unchanged), or NULL when out of memory.
void *ctl_buf_reserve(ctl_buf *b, size_t n);

// Appends the n bytes at p; 0, or -1 when out of memory.
int ctl_buf_append(ctl_buf *b, const void *p, size_t n);

void ctl_buf_free(ctl_buf *b);

#endif
