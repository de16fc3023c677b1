// The growing buffer of ctl_buf.h: capacity doubles, so appends are amortised O(1).
#include "ctl_buf.h"

#include <stdlib.h>
#include <string.h>

void *ctl_buf_reserve(ctl_buf *b, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n)
            cap *= 2;
        unsigned char *p = realloc(b->data, cap);
        if (!p)
            return NULL;
        b->data = p;
        b->cap = cap;
    }
    return b->data + b->len;
}

int ctl_buf_append(ctl_buf *b, const void *p, size_t n)
{
    void *dst = ctl_buf_reserve(b, n);
    if (!dst)
        return -1;
    if (n)
        memcpy(dst, p, n);
    b->len += n;
    return 0;
}

void ctl_buf_free(ctl_buf *b)
{
    free(b->data);
    *b = (ctl_buf){0};
}
